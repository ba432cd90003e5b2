import { copyFile, mkdtemp, open, rm, statfs, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DiskFullError } from '../../errors.js';
import type { Reporter } from '../../progress.js';
import { makeRootFilesystem } from '../../disk/ext4.js';
import { addBootFiles, makeBootFilesystem } from '../../disk/fat.js';
import { BOOT_SECRETS_DIR } from '../../../shared/node-paths.js';
import { MIB, planLayout, type DiskLayout } from '../../disk/layout.js';
import { readPartitionTable, writePartitionTable, type PartitionTable } from '../../disk/partition-table.js';
import type { Plan } from '../../plan/plan.js';
import type { LayersMeta } from './layers.js';
import { SECRET_FILE_MODE } from '../output-dir.js';

export interface DiskResult {
  layout: DiskLayout;
  table: PartitionTable;
}

/** Free space the disk and artifact stages need on the output file system: the image's data, its .zst, slack. */
export function bytesNeeded(meta: LayersMeta, layout: DiskLayout): number {
  return Math.ceil((meta.contentBytes + meta.bootBytes) * 1.6 + 64 * MIB + layout.totalBytes * 0.01);
}

/** Fails early, naming the output, when the file system holding `dir` cannot take `needed` bytes. */
export async function checkFreeSpace(dir: string, needed: number, output: string): Promise<void> {
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  if (free < needed) {
    throw new DiskFullError(
      `not enough free space for ${output}: ${Math.ceil(free / MIB)} MiB free on its file system, about ${Math.ceil(needed / MIB)} MiB needed`,
      'free some space there or choose another --out',
    );
  }
}

/** A sparse MBR disk image: partition table, FAT boot partition, ext4 root partition. */
export async function runDiskStage(opts: {
  plan: Plan;
  layers: LayersMeta;
  layersDir: string;
  image: string;
  /** Secret files for the boot partition's pi-image/ folder (never cached: written here only). */
  secrets: { name: string; source: string }[];
  reporter: Reporter;
  signal?: AbortSignal;
}): Promise<DiskResult> {
  const { plan, reporter } = opts;
  const layout = planLayout({
    diskId: plan.disk.diskId,
    bootOffsetMib: plan.boot.offsetMib,
    bootMib: plan.boot.partitionMib,
    rootContentBytes: opts.layers.contentBytes,
    rootInodes: opts.layers.inodes,
    headroomMib: plan.disk.headroomMib,
  });
  await checkFreeSpace(dirname(opts.image), bytesNeeded(opts.layers, layout), plan.outputs.dir);

  const handle = await open(opts.image, 'w', SECRET_FILE_MODE); // its boot partition will hold the secrets
  await handle.truncate(layout.totalBytes); // sparse: only written blocks use space
  await handle.close();

  reporter.emit({ type: 'stage-progress', stage: 'disk', fraction: 0.05, detail: 'partition table' });
  await writePartitionTable(opts.image, layout, reporter);
  reporter.emit({ type: 'stage-progress', stage: 'disk', fraction: 0.1, detail: 'boot partition (FAT32)' });
  await makeBootFilesystem({
    image: opts.image,
    layout,
    contentDir: join(opts.layersDir, 'boot'),
    sourceDateEpoch: opts.layers.sourceDateEpoch,
    reporter,
  });
  if (opts.secrets.length) await putSecrets(opts.image, layout, opts.secrets, opts.layers.sourceDateEpoch, reporter);
  reporter.emit({ type: 'stage-progress', stage: 'disk', fraction: 0.2, detail: 'root partition (ext4 from the rootfs tarball)' });
  await makeRootFilesystem({
    image: opts.image,
    layout,
    rootfsTar: join(opts.layersDir, 'rootfs.tar'),
    sourceDateEpoch: opts.layers.sourceDateEpoch,
    reporter,
    signal: opts.signal,
  });
  const table = await readPartitionTable(opts.image, reporter);
  reporter.emit({ type: 'stage-progress', stage: 'disk', fraction: 1, detail: 'disk image written' });
  return { layout, table };
}

/** Copies the secrets under their names into a private temporary folder, then onto the FAT partition. */
async function putSecrets(image: string, layout: DiskLayout, secrets: { name: string; source: string }[], sourceDateEpoch: number, reporter: Reporter): Promise<void> {
  const dir = await mkdtemp(join(dirname(image), '.secrets-'));
  try {
    const files: string[] = [];
    for (const { name, source } of secrets) {
      const file = join(dir, name);
      await copyFile(source, file);
      await utimes(file, sourceDateEpoch, sourceDateEpoch);
      files.push(file);
    }
    await addBootFiles({ image, fatOffset: layout.boot.startBytes, folder: BOOT_SECRETS_DIR.split('/').pop() as string, files, sourceDateEpoch, reporter });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
