import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBootFilesystem, mkfsVfatArgs } from '../../../../src/host/disk/fat.js';
import { derivedFatVolumeId, MIB, type DiskLayout } from '../../../../src/host/disk/layout.js';
import { planBuild } from '../../../../src/host/plan/plan-build.js';
import { resolveConfig } from '../../../../src/host/config/config.js';
import { silentReporter } from '../../../../src/host/progress.js';

/** A small disk: a 40 MiB FAT32 boot partition at 1 MiB (FAT32 wants at least ~33 MiB). */
const layoutFor = (diskId: string): DiskLayout => ({
  diskId,
  totalBytes: 42 * MIB,
  boot: { startBytes: 1 * MIB, sizeBytes: 40 * MIB, type: 'c', label: 'bootfs' },
  root: { startBytes: 41 * MIB, sizeBytes: 1 * MIB, type: '83', label: 'rootfs' },
});

const diskIdOf = async (config: Record<string, unknown>) => (await planBuild(resolveConfig(config, {}), { env: {} })).plan.disk.diskId;

describe('FAT volume serial', () => {
  it('is derived from the disk id: different for another image name or board, the same for the same inputs', async () => {
    const serial = async (config: Record<string, unknown>) => derivedFatVolumeId(await diskIdOf(config));
    const qemu = await serial({});
    expect(await serial({})).toBe(qemu);
    const others = [await serial({ name: 'node-a' }), await serial({ name: 'node-b' }), await serial({ board: 'pi5' }), await serial({ board: 'pi5', name: 'node-a' })];
    expect(new Set([qemu, ...others]).size).toBe(5);
    for (const s of [qemu, ...others]) expect(s).toMatch(/^[0-9a-f]{8}$/);
    expect(qemu).not.toBe('1234abcd');
  });

  it("is what mkfs.vfat is told, after --invariant (which sets 1234-ABCD and would override an earlier -i)", () => {
    const layout = layoutFor('1a2b3c4d');
    const args = mkfsVfatArgs('disk.img', layout);
    expect(args[args.indexOf('-i') + 1]).toBe(derivedFatVolumeId('1a2b3c4d'));
    expect(args.indexOf('--invariant')).toBeGreaterThanOrEqual(0);
    expect(args.indexOf('--invariant')).toBeLessThan(args.indexOf('-i'));
    expect(args).toEqual(['-F', '32', '-n', 'bootfs', '--invariant', '-i', '6386403f', '--offset=2048', 'disk.img', String(40 * 1024)]);
  });

  const hasMkfs = spawnSync('mkfs.vfat', ['--help']).error === undefined;
  describe('in the file system mkfs.vfat writes', () => {
    beforeAll(() => {
      if (!hasMkfs) throw new Error('mkfs.vfat is missing: run scripts/setup-host (dosfstools)');
    });
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fat-serial-'));
      await mkdir(join(dir, 'empty'));
    });
    afterAll(() => rm(dir, { recursive: true, force: true }));

    /** Makes the boot file system for `diskId`; returns its volume serial (FAT32 BS_VolID, at byte 0x43) and the image's hash. */
    const make = async (diskId: string, file: string) => {
      const layout = layoutFor(diskId);
      const image = join(dir, file);
      const handle = await open(image, 'w');
      await handle.truncate(layout.totalBytes);
      await handle.close();
      await makeBootFilesystem({ image, layout, contentDir: join(dir, 'empty'), sourceDateEpoch: 1_700_000_000, reporter: silentReporter });
      const bytes = await readFile(image);
      const serial = bytes.readUInt32LE(layout.boot.startBytes + 0x43).toString(16).padStart(8, '0');
      return { serial, sha256: createHash('sha256').update(bytes).digest('hex') };
    };

    it('carries the derived serial: per disk id, and byte-identical for the same one', async () => {
      const [a, b] = [await diskIdOf({}), await diskIdOf({ name: 'node-a' })];
      const first = await make(a, 'a1.img');
      const again = await make(a, 'a2.img');
      const other = await make(b, 'b.img');
      expect(first.serial).toBe(derivedFatVolumeId(a));
      expect(other.serial).toBe(derivedFatVolumeId(b));
      expect(first.serial).not.toBe('1234abcd');
      expect(other.serial).not.toBe(first.serial);
      expect(again.sha256).toBe(first.sha256);
    }, 60_000);
  });
});
