import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Reporter } from '../progress.js';
import { runTool } from '../tools/run.js';
import { SECTOR, type DiskLayout } from './layout.js';

/** mtools on image files: no drive config from the host, no refusal of unusual geometry. */
export const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: '1', MTOOLSRC: '/dev/null' };

/** FAT32 `bootfs` inside the disk image at the boot partition's offset, filled with mtools (no mount). */
export async function makeBootFilesystem(opts: {
  image: string;
  layout: DiskLayout;
  volumeId: string;
  contentDir: string;
  sourceDateEpoch: number;
  reporter: Reporter;
}): Promise<void> {
  const { boot } = opts.layout;
  const env = { ...MTOOLS_ENV, SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch) };
  await runTool(
    'mkfs.vfat',
    ['-F', '32', '-n', boot.label, '-i', opts.volumeId, '--invariant', `--offset=${boot.startBytes / SECTOR}`, opts.image, String(boot.sizeBytes / 1024)],
    { stage: 'disk', reporter: opts.reporter, env },
  );
  const top = (await readdir(opts.contentDir)).sort();
  if (!top.length) return;
  await runTool('mcopy', ['-i', `${opts.image}@@${boot.startBytes}`, '-s', '-p', '-m', '-Q', ...top.map((n) => join(opts.contentDir, n)), '::/'], {
    stage: 'disk',
    reporter: opts.reporter,
    env,
  });
}

/** Adds files to a folder of the FAT file system already in the image (the first-boot secrets). */
export async function addBootFiles(opts: { image: string; layout: DiskLayout; folder: string; files: string[]; sourceDateEpoch: number; reporter: Reporter }): Promise<void> {
  const target = `${opts.image}@@${opts.layout.boot.startBytes}`;
  const env = { ...MTOOLS_ENV, SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch) };
  // A boot partition kept from a base image may have the folder (and an old secret) already.
  const exists = await runTool('mdir', ['-i', target, '-b', `::/${opts.folder}`], { stage: 'disk', reporter: opts.reporter, env }).then(() => true, () => false);
  if (!exists) await runTool('mmd', ['-i', target, `::/${opts.folder}`], { stage: 'disk', reporter: opts.reporter, env });
  await runTool('mcopy', ['-i', target, '-D', 'o', '-p', '-m', '-Q', ...opts.files, `::/${opts.folder}/`], { stage: 'disk', reporter: opts.reporter, env });
}
