import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { StageCache } from '../../../../src/host/pipeline/cache.js';
import { readTar } from '../../../../src/host/pipeline/rootfs-tar.js';
import type { ProgressEvent, Reporter } from '../../../../src/host/progress.js';

/** A small rootfs tarball: two files, so it can be cut cleanly after the first. */
async function writeTar(path: string): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack as unknown as NodeJS.ReadableStream, createWriteStream(path));
  pack.entry({ name: 'etc/hostname', mode: 0o644, mtime: new Date(0) }, 'node\n');
  pack.entry({ name: 'usr/bin/pi-node', mode: 0o755, mtime: new Date(0) }, 'AGENT'.repeat(300));
  pack.finalize();
  await done;
}

function recorder(): Reporter & { warnings: string[] } {
  const warnings: string[] = [];
  return { verbose: false, warnings, emit: (e: ProgressEvent) => void (e.type === 'warning' && warnings.push(e.message)) };
}

describe('stage cache', () => {
  const setup = async () => {
    const reporter = recorder();
    const cache = new StageCache(mkdtempSync(join(tmpdir(), 'pi-image-cache-')), reporter);
    let builds = 0;
    const produce = async (dir: string) => {
      builds += 1;
      await writeTar(join(dir, 'rootfs.tar'));
      mkdirSync(join(dir, 'boot'));
      writeFileSync(join(dir, 'boot/vmlinuz'), 'KERNEL');
      writeFileSync(join(dir, 'meta.json'), '{"packages":[]}\n');
    };
    const use = () => cache.use('base', 'k1', produce);
    return { reporter, cache, use, builds: () => builds, entry: cache.entry('base', 'k1') };
  };

  it('reuses an entry whose files match the sizes and SHA-256 it recorded last', async () => {
    const { reporter, use, builds, entry } = await setup();
    expect(await use()).toEqual({ dir: entry, cached: false });
    const record = JSON.parse(readFileSync(join(entry, 'cache-entry.json'), 'utf8'));
    const tarBytes = readFileSync(join(entry, 'rootfs.tar'));
    expect(record.files).toEqual([
      { path: 'boot/vmlinuz', size: 6, sha256: createHash('sha256').update('KERNEL').digest('hex') },
      { path: 'meta.json', size: 16, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) },
      { path: 'rootfs.tar', size: tarBytes.length, sha256: createHash('sha256').update(tarBytes).digest('hex') },
    ]);
    expect(await use()).toEqual({ dir: entry, cached: true });
    expect(builds()).toBe(1);
    expect(reporter.warnings).toEqual([]);
  });

  it('reports a tarball cut at an entry boundary as bad, discards the entry and rebuilds it', async () => {
    const { reporter, cache, use, builds, entry } = await setup();
    await use();
    const cut = 1024; // the first entry's header and its one data block
    truncateSync(join(entry, 'rootfs.tar'), cut);
    // Why sizes and hashes are needed: the cut tarball still reads as a valid one, one file short.
    const names: string[] = [];
    for await (const { name, body } of readTar(join(entry, 'rootfs.tar'))) {
      names.push(name);
      body.resume();
    }
    expect(names).toEqual(['etc/hostname']);

    expect(await cache.has('base', 'k1')).toBe(false);
    expect(reporter.warnings).toEqual([expect.stringMatching(/^cache entry base\/k1 is damaged: rootfs\.tar has 1024 bytes, \d+ recorded; discarded, rebuilding it$/)]);
    expect(existsSync(entry)).toBe(false);
    expect(await use()).toEqual({ dir: entry, cached: false });
    expect(builds()).toBe(2);
    expect(statSync(join(entry, 'rootfs.tar')).size).toBeGreaterThan(cut);
    expect(await use()).toMatchObject({ cached: true });
  });

  it('reports a file altered in place (same size) and a missing file as bad', async () => {
    const { reporter, use, builds, entry } = await setup();
    await use();
    writeFileSync(join(entry, 'boot/vmlinuz'), 'KERNAL');
    expect(await use()).toMatchObject({ cached: false });
    rmSync(join(entry, 'meta.json'));
    expect(await use()).toMatchObject({ cached: false });
    expect(builds()).toBe(3);
    expect(reporter.warnings).toEqual([
      'cache entry base/k1 is damaged: boot/vmlinuz does not match its recorded SHA-256; discarded, rebuilding it',
      'cache entry base/k1 is damaged: meta.json is missing; discarded, rebuilding it',
    ]);
  });

  it('counts an entry without its record (an older pi-image, or a write cut short) as bad', async () => {
    const { reporter, use, builds, entry } = await setup();
    await use();
    rmSync(join(entry, 'cache-entry.json'));
    expect(await use()).toMatchObject({ cached: false });
    expect(builds()).toBe(2);
    expect(reporter.warnings).toEqual([expect.stringMatching(/^cache entry base\/k1 has no checksum record \(cache-entry\.json\).*; discarded, rebuilding it$/)]);
    expect(existsSync(join(entry, 'cache-entry.json'))).toBe(true);
  });
});
