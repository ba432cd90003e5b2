import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Reporter } from '../progress.js';
import { runTool } from '../tools/run.js';
import { derivedFatVolumeId, SECTOR, type DiskLayout } from './layout.js';

/** mtools on image files: no drive config from the host, no refusal of unusual geometry. */
export const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: '1', MTOOLSRC: '/dev/null' };

/**
 * mkfs.vfat's arguments for the boot partition. `--invariant` fixes its time stamps and
 * random fields but also sets the volume serial to 1234-ABCD; mkfs.vfat takes the last of
 * the two, so the serial derived from the disk id (`-i`) comes after it: every image has its
 * own, the same on every rebuild.
 */
export function mkfsVfatArgs(image: string, layout: DiskLayout): string[] {
  const { boot } = layout;
  return ['-F', '32', '-n', boot.label, '--invariant', '-i', derivedFatVolumeId(layout.diskId), `--offset=${boot.startBytes / SECTOR}`, image, String(boot.sizeBytes / 1024)];
}

/** FAT32 `bootfs` inside the disk image at the boot partition's offset, filled with mtools (no mount). */
export async function makeBootFilesystem(opts: {
  image: string;
  layout: DiskLayout;
  contentDir: string;
  sourceDateEpoch: number;
  reporter: Reporter;
}): Promise<void> {
  const { boot } = opts.layout;
  const env = { ...MTOOLS_ENV, SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch) };
  await runTool('mkfs.vfat', mkfsVfatArgs(opts.image, opts.layout), { stage: 'disk', reporter: opts.reporter, env });
  const top = (await readdir(opts.contentDir)).sort();
  if (!top.length) return;
  await runTool('mcopy', ['-i', `${opts.image}@@${boot.startBytes}`, '-s', '-p', '-m', '-Q', ...top.map((n) => join(opts.contentDir, n)), '::/'], {
    stage: 'disk',
    reporter: opts.reporter,
    env,
  });
}

/**
 * Adds files to a folder ('' for the top) of the FAT file system at byte `fatOffset` of an
 * image or a card, replacing files of the same name (the first-boot secrets at build time, a
 * card's identity at flash time).
 */
export async function addBootFiles(opts: { image: string; fatOffset: number; folder: string; files: string[]; sourceDateEpoch?: number; reporter: Reporter; stage?: string }): Promise<void> {
  const target = `${opts.image}@@${opts.fatOffset}`;
  const env = { ...MTOOLS_ENV, ...(opts.sourceDateEpoch !== undefined ? { SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch) } : {}) };
  const tool = { stage: opts.stage ?? 'disk', reporter: opts.reporter, env };
  if (opts.folder) {
    // A boot partition kept from a base image (or a card flashed before) may have the folder already.
    const exists = await runTool('mdir', ['-i', target, '-b', `::/${opts.folder}`], tool).then(() => true, () => false);
    if (!exists) await runTool('mmd', ['-i', target, `::/${opts.folder}`], tool);
  }
  await runTool('mcopy', ['-i', target, '-D', 'o', '-p', '-m', '-Q', ...opts.files, `::/${opts.folder}${opts.folder ? '/' : ''}`], tool);
}
