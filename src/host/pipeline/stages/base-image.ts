import { copyFile, mkdtemp, open, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PiImageError } from '../../errors.js';
import { checkUnitName } from '../../catalog/unit-name.js';
import { readPartitionTable } from '../../disk/partition-table.js';
import { MIB, SECTOR } from '../../disk/layout.js';
import { MTOOLS_ENV } from '../../disk/fat.js';
import type { Reporter } from '../../progress.js';
import { MountStack, withChroot } from '../../tools/chroot.js';
import { pinnedFile } from '../../tools/download.js';
import { runTool } from '../../tools/run.js';
import type { Plan } from '../../plan/plan.js';
import { describeRootfs, type BaseMeta } from './base.js';

const FAT_TYPES = ['b', 'c', 'e', 'ef'];
const STAGE = 'base';

/** Decompresses (xz, zstd, gzip: by their magic bytes) or copies the image to a writable work file. */
export async function workingCopy(source: string, target: string, reporter: Reporter, signal?: AbortSignal): Promise<void> {
  const handle = await open(source, 'r');
  const magic = Buffer.alloc(6);
  await handle.read(magic, 0, 6, 0);
  await handle.close();
  const decompressor = magic.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))
    ? ['xz', '-dc', '-T0']
    : magic.readUInt32LE(0) === 0xfd2fb528
      ? ['zstd', '-dc']
      : magic[0] === 0x1f && magic[1] === 0x8b
        ? ['gzip', '-dc']
        : undefined;
  reporter.emit({ type: 'stage-progress', stage: STAGE, detail: decompressor ? `decompressing (${decompressor[0]})` : 'copying the image' });
  if (decompressor) {
    const [cmd, ...args] = decompressor as [string, ...string[]];
    await runTool(cmd, [...args, source], { stage: STAGE, reporter, signal, stdoutFile: target });
  } else {
    await runTool('cp', ['--sparse=always', source, target], { stage: STAGE, reporter, signal });
  }
}

/** apt.extra_sources for an image base: a sources list and keyrings inside the image, used by apt in the chroot and later on the node. */
async function addExtraSources(root: string, plan: Plan): Promise<void> {
  const sources = plan.base.extraSources;
  if (!sources.length) return;
  for (const k of plan.base.keyrings) await copyFile(k.path, join(root, 'etc/apt/trusted.gpg.d', k.name));
  const lines = sources.flatMap((src) => src.uris.flatMap((uri) => src.suites.map((suite) => `deb ${uri} ${suite} ${src.components.join(' ')}`)));
  await writeFile(join(root, 'etc/apt/sources.list.d/pi-image-extra.list'), `# Added by pi-image (apt.extra_sources)\n${lines.join('\n')}\n`);
}

async function copyOutOfFat(image: string, offset: number, dest: string, reporter: Reporter): Promise<void> {
  const env = MTOOLS_ENV;
  const listing = await runTool('mdir', ['-b', '-i', `${image}@@${offset}`, '::/'], { stage: STAGE, reporter, env });
  if (!listing.trim()) return;
  await runTool('mcopy', ['-s', '-n', '-m', '-i', `${image}@@${offset}`, '::/*', `${dest}/`], { stage: STAGE, reporter, env });
}

const asMib = (sectors: number, what: string) => {
  const mib = (sectors * SECTOR) / MIB;
  if (!Number.isInteger(mib)) throw new PiImageError(`base.image: the ${what} is not aligned to 1 MiB (${sectors} sectors)`, 'pi-image keeps the base image layout and needs MiB-aligned partitions, as Raspberry Pi OS has');
  return mib;
};

/**
 * The base rootfs from an existing disk image (Raspberry Pi OS layout: FAT boot partition
 * mounted at /boot/firmware, ext4 root): mounted, the layers' packages installed with apt
 * in a chroot (qemu-user on non-arm64 hosts) so dpkg knows them, then packed as a tarball
 * with the boot files under boot/firmware/.
 */
export async function runImageBaseStage(opts: { plan: Plan; outDir: string; cacheDir: string; reporter: Reporter; signal?: AbortSignal; root: boolean }): Promise<BaseMeta> {
  const { plan, outDir, reporter, signal } = opts;
  const image = plan.base.image;
  if (!image) throw new Error('runImageBaseStage needs plan.base.image');
  if (!opts.root) throw new PiImageError('importing a disk image (base.image) needs root: it loop-mounts the partitions and installs packages in a chroot', 'run the build as root (sudo)');
  const source = await pinnedFile(image.source, image.sha256, { cacheDir: opts.cacheDir, stage: STAGE, reporter, signal });
  const work = join(outDir, 'work.img');
  await workingCopy(source, work, reporter, signal);

  const table = await readPartitionTable(work, reporter);
  const boot = table.partitions.find((p) => FAT_TYPES.includes(p.type.toLowerCase()));
  const rootPart = table.partitions.find((p) => p.type === '83');
  if (table.label !== 'dos' || !boot || !rootPart) {
    throw new PiImageError(`base.image: expected an MBR disk with a FAT boot partition and a Linux root partition (Raspberry Pi OS layout); found ${table.label} with types ${table.partitions.map((p) => p.type).join(', ') || 'none'}`);
  }
  const bootOffsetMib = asMib(boot.start, 'boot partition start');
  const bootMib = asMib(boot.size, 'boot partition size');

  // Outside the cache entry: a failed build's clean-up (rm -r) must never walk into a mount.
  const mnt = await mkdtemp(join(tmpdir(), 'pi-image-mnt-'));
  const mounts = new MountStack(STAGE, reporter);
  let configTxt: string | undefined;
  let cmdline: string | undefined;
  try {
    reporter.emit({ type: 'stage-progress', stage: STAGE, fraction: 0.2, detail: 'mounting the image' });
    await mounts.mountPartition(work, rootPart.start * SECTOR, rootPart.size * SECTOR, mnt, 'ext4');
    const firmware = join(mnt, 'boot/firmware');
    if (!(await stat(firmware).then((s) => s.isDirectory(), () => false))) {
      throw new PiImageError('base.image: the root file system has no /boot/firmware (Raspberry Pi OS bookworm or newer has one)');
    }
    // The boot partition's files go into the rootfs tarball under boot/firmware/ (the layers stage
    // puts them back on FAT); mtools reads FAT without a kernel driver or a mount.
    await copyOutOfFat(work, boot.start * SECTOR, firmware, reporter);
    configTxt = await readFile(join(firmware, 'config.txt'), 'utf8').catch(() => undefined);
    cmdline = await readFile(join(firmware, 'cmdline.txt'), 'utf8').catch(() => undefined);

    await withChroot(mnt, mounts, async (chroot) => {
      const installed = new Set(
        (await chroot(['dpkg-query', '-W', '-f=${Package} ${db:Status-Status}\\n']))
          .split('\n')
          .filter((l) => l.endsWith(' installed'))
          .map((l) => l.split(' ')[0]),
      );
      await addExtraSources(mnt, plan);
      const missing = plan.base.packages.filter((p) => !installed.has(p));
      if (missing.length) {
        const aptOpts = plan.base.checkValidUntil ? [] : ['-o', 'Acquire::Check-Valid-Until=false'];
        reporter.emit({ type: 'stage-progress', stage: STAGE, fraction: 0.35, detail: `installing ${missing.join(', ')} (apt in the image)` });
        await chroot(['apt-get', ...aptOpts, 'update']);
        await chroot(['apt-get', ...aptOpts, 'install', '-y', '--no-install-recommends', ...missing]);
        await chroot(['apt-get', 'clean']);
        await chroot(['sh', '-c', 'rm -rf /var/lib/apt/lists/*']);
      }
      for (const unit of plan.base.enableUnits) await chroot(['systemctl', 'enable', '--', checkUnitName(unit, 'base_enable')]);
    }, { stage: STAGE, reporter, signal });

    reporter.emit({ type: 'stage-progress', stage: STAGE, fraction: 0.8, detail: 'packing the rootfs' });
    await runTool('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '--acls', '-C', mnt, '-cf', join(outDir, 'rootfs.tar'), '.'], { stage: STAGE, reporter, signal });
  } finally {
    await mounts.unwind();
    await rm(work, { force: true });
    await rmdir(mnt).catch(() => undefined); // only ever an empty mount point
  }

  const meta: BaseMeta = {
    ...(await describeRootfs(join(outDir, 'rootfs.tar'), reporter)),
    mmdebstrapSeconds: 0,
    imported: { diskId: table.id.replace(/^0x/, '').padStart(8, '0'), bootOffsetMib, bootMib, configTxt, cmdline },
  };
  await writeFile(join(outDir, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
  return meta;
}
