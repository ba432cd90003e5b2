import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { moveSecretOffBootPartition } from '../../../src/node/first-boot.js';

const SECRET = 'c0ffee'.repeat(10) + 'abcd\n'; // as `openssl rand -hex 32` makes it, shape-wise
const OLD_SECRET = 'beef'.repeat(16) + '\n';

/** A boot partition folder and /etc/pi-image in a temporary folder, with real files. */
function node(opts: { boot?: string | Buffer; etc?: string | Buffer }) {
  const root = mkdtempSync(join(tmpdir(), 'pi-image-first-boot-'));
  const bootDir = join(root, 'boot/firmware/pi-image');
  const secretsDir = join(root, 'etc/pi-image');
  mkdirSync(bootDir, { recursive: true });
  if (opts.boot !== undefined) writeFileSync(join(bootDir, 'cluster.secret'), opts.boot);
  if (opts.etc !== undefined) {
    mkdirSync(secretsDir, { recursive: true });
    writeFileSync(join(secretsDir, 'cluster.secret'), opts.etc, { mode: 0o600 });
  }
  const lines: string[] = [];
  return {
    bootFile: join(bootDir, 'cluster.secret'),
    etcFile: join(secretsDir, 'cluster.secret'),
    bootDir,
    lines,
    move: () => moveSecretOffBootPartition('cluster.secret', (l) => lines.push(l), bootDir, secretsDir),
  };
}

/** What the wipe leaves on the FAT before the delete: the same length, every byte zero. */
const wiped = (secret: string) => Buffer.alloc(Buffer.byteLength(secret));

describe('moving a secret off the boot partition', () => {
  it('copies it to /etc (0600), checks the copy, wipes and deletes the FAT copy', async () => {
    const n = node({ boot: SECRET });
    expect(await n.move()).toBe(true);
    expect(readFileSync(n.etcFile, 'utf8')).toBe(SECRET);
    expect(statSync(n.etcFile).mode & 0o777).toBe(0o600);
    expect(existsSync(n.bootFile)).toBe(false);
    expect(existsSync(n.bootDir)).toBe(false); // emptied, so removed
    expect(n.lines.join('\n')).toMatch(/moved cluster.secret from the boot partition/);
  });

  it('takes a new secret from the boot partition over the one in /etc (re-keying a cluster)', async () => {
    const n = node({ boot: SECRET, etc: OLD_SECRET });
    expect(await n.move()).toBe(true);
    expect(readFileSync(n.etcFile, 'utf8')).toBe(SECRET);
    expect(existsSync(n.bootFile)).toBe(false);
  });

  it('after a power cut between the wipe and the delete: keeps the good /etc copy and finishes the delete', async () => {
    const n = node({ boot: wiped(SECRET), etc: SECRET });
    expect(await n.move()).toBe(false);
    expect(readFileSync(n.etcFile, 'utf8')).toBe(SECRET);
    expect(existsSync(n.bootFile)).toBe(false);
    expect(n.lines.join('\n')).toMatch(/is all zero bytes.*not copied; kept .*etc\/pi-image\/cluster.secret/);
  });

  it('refuses a zeroed FAT copy when /etc has no secret: nothing copied, a line that says what to do', async () => {
    const n = node({ boot: wiped(SECRET) });
    expect(await n.move()).toBe(false);
    expect(existsSync(n.etcFile)).toBe(false);
    expect(n.lines).toHaveLength(1);
    expect(n.lines[0]).toMatch(/^error: .*cluster.secret is all zero bytes/);
    expect(n.lines[0]).toMatch(/put .*cluster.secret.* on the boot partition as pi-image\/cluster.secret and reboot/i);
  });

  it('refuses a secret too short to be one, and does not overwrite a good /etc copy with it', async () => {
    const fresh = node({ boot: 'short\n' });
    expect(await fresh.move()).toBe(false);
    expect(existsSync(fresh.etcFile)).toBe(false);
    expect(fresh.lines[0]).toMatch(/holds 5 characters; at least 16 are needed/);

    const kept = node({ boot: '  \n', etc: SECRET });
    expect(await kept.move()).toBe(false);
    expect(readFileSync(kept.etcFile, 'utf8')).toBe(SECRET);
  });

  it('does nothing when there is no secret on the boot partition', async () => {
    const n = node({ etc: SECRET });
    expect(await n.move()).toBe(false);
    expect(readFileSync(n.etcFile, 'utf8')).toBe(SECRET);
    expect(n.lines).toEqual([]);
  });
});
