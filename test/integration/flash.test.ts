import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCardFiles } from '../../src/node/card-files.js';
import { CARD_FILES } from '../../src/shared/node-paths.js';
import type { CardIdentity } from '../../src/shared/card-identity.js';
import { REPO, runCli } from '../helpers/cli.js';
import { parseBmap } from '../../src/host/flash/bmap.js';
import { flash, type FlashOptions } from '../../src/host/flash/flash.js';
import { bmapByteRanges } from '../../src/host/flash/ranges.js';
import { silentReporter, type ProgressEvent } from '../../src/host/progress.js';

/*
 * pi-image flash on a small real image (64 MiB sparse: MBR with two partitions, a FAT-sized
 * and an ext4-sized region holding data, made with sfdisk + dd; its .bmap by bmaptool, its .zst
 * by zstd) to regular files and loop devices. Needs root (losetup, mount).
 */
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' }).trim();
const work = mkdtempSync(join(tmpdir(), 'flash-test-'));
const image = join(work, 'test.img');
const bmapFile = join(work, 'test.bmap');
/** Like a built image's start: a FAT boot partition first (a real file system), the rest mapped sparsely. */
const fatImage = join(work, 'fat.img');
const FAT_OFFSET = 2048 * 512;
const KEY = readFileSync(join(REPO, 'test/fixtures/test-login-key.pub'), 'utf8').trim();
const loops: string[] = [];
const mounts: string[] = [];

function loopDevice(size: number): string {
  const backing = join(work, `backing-${loops.length}.raw`);
  closeSync(openSync(backing, 'w'));
  execFileSync('truncate', ['-s', String(size), backing]);
  const dev = sh('losetup', ['--find', '--show', backing]);
  loops.push(dev);
  return dev;
}

function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(length);
    readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    closeSync(fd);
  }
}

function flipByte(path: string, offset: number): void {
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, offset);
  b.writeUInt8(b.readUInt8(0) ^ 0xff, 0);
  writeSync(fd, b, 0, 1, offset);
  closeSync(fd);
}

/** Every mapped byte range of the image equals the target's. */
function expectMappedEqual(target: string): void {
  const bmap = parseBmap(readFileSync(bmapFile, 'utf8'));
  for (const r of bmapByteRanges(bmap)) expect(readAt(target, r.offset, r.length).equals(readAt(image, r.offset, r.length)), `range ${r.first}-${r.last}`).toBe(true);
}

const yes = async () => true;
const base = (over: Partial<FlashOptions> & { image: string; target: string }): FlashOptions => ({ reporter: silentReporter, confirm: yes, ...over });

beforeAll(() => {
  execFileSync('truncate', ['-s', '64M', image]);
  execFileSync('sfdisk', ['-q', image], { input: 'label: dos\nstart=2048, size=16384, type=c\nstart=18432, type=83\n' });
  execFileSync('dd', ['if=/dev/urandom', `of=${image}`, 'bs=4096', 'seek=256', 'count=64', 'conv=notrunc', 'status=none']);
  execFileSync('dd', ['if=/dev/urandom', `of=${image}`, 'bs=4096', 'seek=5000', 'count=700', 'conv=notrunc', 'status=none']);
  execFileSync('dd', ['if=/dev/urandom', `of=${image}`, 'bs=4096', 'seek=16383', 'count=1', 'conv=notrunc', 'status=none']);
  execFileSync('bmaptool', ['create', '-o', bmapFile, image], { stdio: 'ignore' });
  execFileSync('zstd', ['-q', '-f', image, '-o', `${image}.zst`]);

  execFileSync('truncate', ['-s', '64M', fatImage]);
  execFileSync('sfdisk', ['-q', fatImage], { input: 'label: dos\nstart=2048, size=81920, type=c\nstart=83968, type=83\n' });
  execFileSync('mkfs.vfat', ['-F', '32', '-n', 'bootfs', `--offset=2048`, fatImage, String(81920 / 2)], { stdio: 'ignore' });
  execFileSync('mcopy', ['-i', `${fatImage}@@${FAT_OFFSET}`, join(REPO, 'LICENSE'), '::/config.txt'], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
  execFileSync('dd', ['if=/dev/urandom', `of=${fatImage}`, 'bs=4096', 'seek=12000', 'count=300', 'conv=notrunc', 'status=none']);
  execFileSync('bmaptool', ['create', '-o', join(work, 'fat.bmap'), fatImage], { stdio: 'ignore' });
  execFileSync('zstd', ['-q', '-f', fatImage, '-o', `${fatImage}.zst`]);
});

const mtools = { ...process.env, MTOOLS_SKIP_CHECK: '1', MTOOLSRC: '/dev/null' };
/** A file of a card's FAT partition as the node reads it, or undefined when it is not there. */
function fatFile(card: string, name: string): string | undefined {
  try {
    return execFileSync('mtype', ['-i', `${card}@@${FAT_OFFSET}`, `::/${name}`], { env: mtools, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return undefined;
  }
}
/** The identity a node's first boot would read off this card. */
const identityOn = (card: string) => readCardFiles({ userData: fatFile(card, CARD_FILES.userData), networkConfig: fatFile(card, CARD_FILES.networkConfig), node: fatFile(card, CARD_FILES.node) });

afterAll(() => {
  for (const m of mounts.reverse()) spawnQuiet('umount', [m]);
  for (const l of loops) spawnQuiet('losetup', ['-d', l]);
  rmSync(work, { recursive: true, force: true });
});

function spawnQuiet(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
  } catch {
    /* cleanup */
  }
}

describe('flash to a regular file', () => {
  it('writes the mapped blocks of the .img, sparse, and verifies them', async () => {
    const target = join(work, 'out.img');
    const events: ProgressEvent[] = [];
    const result = await flash(base({ image, target, reporter: { verbose: false, emit: (e) => events.push(e) } }));
    expect(result).toMatchObject({ targetKind: 'file', bmap: bmapFile, imageSize: 64 << 20, verified: true });
    expect(statSync(target).size).toBe(64 << 20);
    expect(statSync(target).blocks * 512).toBeLessThan(8 << 20); // holes stayed holes
    expect(existsSync(`${target}.partial`)).toBe(false);
    expect((statSync(target).mode & 0o777).toString(8)).toBe('600');
    expectMappedEqual(target);
    expect(execFileSync('cmp', [image, target]).length).toBe(0); // unmapped parts read as zeros too
    expect(events.filter((e) => e.type === 'stage-end').map((e) => (e as { stage: string }).stage)).toEqual(['write', 'verify']);
    expect(events.some((e) => e.type === 'stage-progress' && /MiB\/s, ETA/.test(e.detail ?? ''))).toBe(true);
  });

  it('writes the .img.zst as a stream to the same result', async () => {
    const target = join(work, 'out-zst.img');
    const result = await flash(base({ image: `${image}.zst`, target }));
    expect(result.bmap).toBe(bmapFile);
    execFileSync('cmp', [image, target]);
  });

  it('writes every byte without a bmap, and says so', async () => {
    const target = join(work, 'out-all.img');
    const warnings: string[] = [];
    const result = await flash(base({ image: `${image}.zst`, target, bmap: false, reporter: { verbose: false, emit: (e) => e.type === 'warning' && warnings.push(e.message) } }));
    expect(result.bytesWritten).toBe(64 << 20);
    expect(warnings.join('\n')).toMatch(/no bmap: writing every byte/);
    execFileSync('cmp', [image, target]);
  });

  it('a corrupted byte after flashing is caught by verify, naming its range', async () => {
    const target = join(work, 'corrupt.img');
    await flash(base({ image, target }));
    await flash(base({ image, target, verifyOnly: true }));
    flipByte(target, 5100 * 4096 + 17);
    await expect(flash(base({ image, target, verifyOnly: true }))).rejects.toThrow(/differs from the image in blocks 5000-5699 \(bytes 20480000-/);
  });

  it('an image that does not match its bmap is an error, and leaves no file behind', async () => {
    const damaged = join(work, 'damaged.img');
    execFileSync('cp', ['--sparse=always', image, damaged]);
    flipByte(damaged, 256 * 4096 + 1);
    const target = join(work, 'never.img');
    await expect(flash(base({ image: damaged, target, bmap: bmapFile }))).rejects.toThrow(/does not match its bmap in blocks 256-319/);
    expect(existsSync(target) || existsSync(`${target}.partial`)).toBe(false);
  });

  it('Ctrl-C stops the write, removes the partial file and never reports success', async () => {
    const target = join(work, 'interrupted.img');
    const controller = new AbortController();
    let progress = 0;
    const run = flash(base({ image: `${image}.zst`, target, bmap: false, signal: controller.signal, reporter: { verbose: false, emit: (e) => { if (e.type === 'stage-start' && progress++ === 0) controller.abort(new Error('interrupted by SIGINT')); } } }));
    await expect(run).rejects.toThrow(/interrupted by SIGINT/);
    expect(existsSync(target) || existsSync(`${target}.partial`)).toBe(false);
  });
});

describe('flash to a block device (loop)', () => {
  it('writes .img and .img.zst, checked over every mapped block; a corrupted byte is caught', async () => {
    const dev = loopDevice(96 << 20);
    await flash(base({ image, target: dev, force: true }));
    expectMappedEqual(dev);
    await flash(base({ image: `${image}.zst`, target: dev, force: true }));
    expectMappedEqual(dev);
    flipByte(dev, 16383 * 4096);
    await expect(flash(base({ image, target: dev, verifyOnly: true }))).rejects.toThrow(/differs from the image in block 16383 \(bytes 67104768-67108863/);
  });

  it('refuses a loop device (not removable) without --force, asks before writing, and needs a confirmation', async () => {
    const dev = loopDevice(64 << 20);
    await expect(flash(base({ image, target: dev }))).rejects.toThrow(/not a removable device[\s\S]*/);
    await expect(flash(base({ image, target: dev }))).rejects.toMatchObject({ hint: expect.stringMatching(/--force/) });
    await expect(flash(base({ image, target: dev, force: true, confirm: undefined }))).rejects.toThrow(/not confirmed/);
    await expect(flash(base({ image, target: dev, force: true, confirm: async () => false }))).rejects.toThrow(/not confirmed/);
    let asked = '';
    await flash(base({ image, target: dev, force: true, confirm: async (d) => ((asked = `${d.path} ${d.size} ${d.model}`), true) }));
    expect(asked).toMatch(new RegExp(`^${dev} ${64 << 20} loop device on `));
  });

  it('an interrupted write to a device is reported as half-written', async () => {
    const dev = loopDevice(64 << 20);
    const controller = new AbortController();
    const run = flash(base({ image, target: dev, force: true, bmap: false, signal: controller.signal, reporter: { verbose: false, emit: (e) => { if (e.type === 'stage-progress') controller.abort(new Error('interrupted by SIGINT')); } } }));
    await expect(run).rejects.toThrow(new RegExp(`${dev} is half-written and will not boot: interrupted by SIGINT`));
  });

  it('refuses a device too small for the image', async () => {
    const dev = loopDevice(32 << 20);
    await expect(flash(base({ image, target: dev, force: true }))).rejects.toThrow(/smaller than the image/);
  });

  it('refuses a mounted device even with --force, and writes nothing', async () => {
    const dev = loopDevice(64 << 20);
    execFileSync('mkfs.ext4', ['-q', dev]);
    const mnt = join(work, 'mnt');
    execFileSync('mkdir', ['-p', mnt]);
    execFileSync('mount', [dev, mnt]);
    mounts.push(mnt);
    const before = readAt(dev, 0, 2 << 20);
    const error = await flash(base({ image, target: dev, force: true })).then(() => undefined, (e: unknown) => e as Error & { hint?: string });
    expect(error?.message).toMatch(new RegExp(`refusing to write ${dev}: ${dev} is in use: ${dev.slice(5)} on ${mnt}`));
    expect(error?.hint).toMatch(/--force does not override this/);
    expect(readAt(dev, 0, 2 << 20).equals(before)).toBe(true);
  });

  it('refuses the device holding / even with --force (refusal only: nothing is opened for writing)', async () => {
    const rootSource = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[1] === '/')?.[0] ?? '';
    let rootDev = rootSource;
    if (!rootDev.startsWith('/dev/') || !statSync(rootDev).isBlockDevice()) return; // / is not on a block device here (overlay, tmpfs)
    // The whole disk if / is on a partition.
    const pk = sh('lsblk', ['-no', 'PKNAME', rootDev]).split('\n')[0];
    if (pk) rootDev = `/dev/${pk}`;
    expect(statSync(rootDev).isBlockDevice()).toBe(true);
    const error = await flash(base({ image, target: rootDev, force: true, confirm: async () => { throw new Error('must not ask'); } })).then(() => undefined, (e: unknown) => e as Error);
    expect(error?.message).toMatch(/holds the running system/);
  });
});

describe('per-card node identity', () => {
  const identity: CardIdentity = { hostname: 'llm-2', role: 'worker', sshKeys: [KEY], network: { link: 'eth0', address: '192.168.1.22/24', gateway: '192.168.1.1', dns: ['192.168.1.1'] } };

  it('writes the node files into the boot partition of a file target after verifying it; the node reads them back', async () => {
    const target = join(work, 'card.img');
    const result = await flash(base({ image: `${fatImage}.zst`, target, identity }));
    expect(result.identityFiles).toEqual(['user-data', 'network-config', 'meta-data', 'pi-image/node.json']);
    expect(identityOn(target)).toEqual({ identity, notes: [], problems: [] });
    expect(fatFile(target, 'config.txt')).toBe(readFileSync(join(REPO, 'LICENSE'), 'utf8'));
    // The FAT is still consistent (fsck.vfat reads it through a read-only loop device at the partition).
    const part = sh('losetup', ['--find', '--show', '--read-only', '--offset', String(FAT_OFFSET), '--sizelimit', String(81920 * 512), target]);
    loops.push(part);
    expect(execFileSync('fsck.vfat', ['-n', part], { encoding: 'utf8' })).toMatch(/\d+ files, \d+\/\d+ clusters/);
  });

  it('on a loop device too', async () => {
    const dev = loopDevice(64 << 20);
    await flash(base({ image: fatImage, target: dev, force: true, identity: { hostname: 'llm-1', role: 'root', sshKeys: [] } }));
    expect(identityOn(dev).identity).toEqual({ hostname: 'llm-1', role: 'root', sshKeys: [] });
  });

  it('--count with a file pattern: numbered cards, named <cluster>-1…N, consecutive addresses', async () => {
    writeFileSync(join(work, 'manifest.json'), JSON.stringify({ config: { cluster: { name: 'llm' } } }));
    const run = await runCli(['flash', `${fatImage}.zst`, join(work, 'node-{n}.img'), '--count', '3', '--address', '10.7.0.11/24', '--interface', '52:54:00:a1:00:01', '--json']);
    expect(run.exitCode, run.stderr).toBe(0);
    const cards = [1, 2, 3].map((n) => identityOn(join(work, `node-${n}.img`)).identity);
    expect(cards.map((c) => [c.hostname, c.network?.address, c.network?.link])).toEqual([
      ['llm-1', '10.7.0.11/24', '52:54:00:a1:00:01'],
      ['llm-2', '10.7.0.12/24', '52:54:00:a1:00:01'],
      ['llm-3', '10.7.0.13/24', '52:54:00:a1:00:01'],
    ]);
    expect(run.events.filter((e) => e.type === 'result')).toHaveLength(3);
  });

  it('follows pi-image.yaml: --index N names the card <cluster>-N and gives it the Nth static address', async () => {
    const config = join(work, 'deploy.yaml');
    writeFileSync(config, 'board: qemu\ncluster: { name: shelf }\nnetwork:\n  addresses: static\n  first_address: 192.168.7.21/24\n  gateway: 192.168.7.1\n  dns: [192.168.7.1]\n');
    // No manifest beside this image: the name comes from the config.
    const image = join(work, 'bare', 'fat.img');
    execFileSync('mkdir', ['-p', join(work, 'bare')]);
    execFileSync('cp', ['--sparse=always', fatImage, image]);
    const run = await runCli(['flash', image, join(work, 'third.img'), '--no-bmap', '--index', '3', '--config', config]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stderr).toContain(`config: ${config}`);
    expect(identityOn(join(work, 'third.img')).identity).toEqual({ hostname: 'shelf-3', sshKeys: [], network: { link: 'eth0', address: '192.168.7.23/24', gateway: '192.168.7.1', dns: ['192.168.7.1'] } });
  });

  it('--count on one card reader: waits for the card to be taken out and the next put in', async () => {
    const dev = loopDevice(64 << 20);
    const second = join(work, 'second-card.raw');
    execFileSync('truncate', ['-s', String(64 << 20), second]);
    const child = execa(process.execPath, [join(REPO, 'dist/host/cli/main.js'), 'flash', fatImage, dev, '--count', '2', '--node', 'shelf', '--force', '--yes'], { reject: false, stdin: 'ignore' });
    let err = '';
    const seen = (re: RegExp) => new Promise<void>((resolve) => {
      const check = () => re.test(err) && resolve();
      child.stderr?.on('data', (d: Buffer) => ((err += d.toString()), check()));
      check();
    });
    await seen(/take the card out of/);
    const first = readFileSync(`/sys/block/${dev.slice(5)}/loop/backing_file`, 'utf8').trim();
    execFileSync('losetup', ['-d', dev]); // the card comes out
    await seen(/card taken out/);
    execFileSync('losetup', [dev, second]); // the next one goes in
    const done = await child;
    expect(done.exitCode, err).toBe(0);
    expect(identityOn(first).identity.hostname).toBe('shelf-1');
    expect(identityOn(second).identity.hostname).toBe('shelf-2');
  }, 120_000);

  it('refuses what it cannot write, before writing anything', async () => {
    const target = join(work, 'refused.img');
    for (const [args, message] of [
      [['--node', 'bad_name'], /--node "bad_name" is not a host name/],
      [['--address', '10.0.0.1'], /not an IPv4 address with a prefix length/],
      [['--role', 'boss'], /argument 'boss' is invalid/],
      [['--count', '2', '--node', 'x'], /--count 2 needs a block device .* or file names with \{n\}/],
      [['--ssh-key', join(work, 'missing.pub')], /--ssh-key .*missing.pub: no such file/],
      [['--verify-only', '--node', 'x'], /--verify-only writes nothing/],
      [['--gateway', '10.0.0.1'], /--gateway and --dns go with a static address/],
    ] as [string[], RegExp][]) {
      const run = await runCli(['flash', fatImage, target, ...args]);
      expect(run.exitCode, args.join(' ')).not.toBe(0);
      expect(run.stderr, args.join(' ')).toMatch(message);
      expect(existsSync(target) || existsSync(`${target}.partial`)).toBe(false);
    }
    const pattern = join(work, 'refused-{n}.img');
    const sameRole = await runCli(['flash', fatImage, pattern, '--count', '2', '--role', 'root']);
    expect(sameRole.stderr).toMatch(/--role gives every one of the 2 cards the same role/);
    expect(existsSync(join(work, 'refused-1.img'))).toBe(false);
  });
});
