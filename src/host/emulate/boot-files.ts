import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readPartitionTable } from '../disk/partition-table.js';
import { SECTOR } from '../disk/layout.js';
import { MTOOLS_ENV } from '../disk/fat.js';
import { silentReporter } from '../progress.js';
import { runTool } from '../tools/run.js';

export interface DirectBootFiles {
  kernel: string;
  initrd: string;
  cmdline: string;
}

/** The qemu board keeps kernel, initrd and cmdline.txt on the FAT partition: read them out with mtools. */
export async function extractDirectBootFiles(image: string, destDir: string): Promise<DirectBootFiles> {
  const table = await readPartitionTable(image, silentReporter);
  const boot = table.partitions[0];
  if (!boot) throw new Error(`${image} has no partitions`);
  await mkdir(destDir, { recursive: true });
  const fat = `${image}@@${boot.start * SECTOR}`;
  const files = { kernel: 'vmlinuz', initrd: 'initrd.img', cmdline: 'cmdline.txt' };
  for (const name of Object.values(files)) {
    await runTool('mcopy', ['-n', '-i', fat, `::${name}`, join(destDir, name)], {
      stage: 'emulate',
      reporter: silentReporter,
      env: MTOOLS_ENV,
      hint: 'is this an image of the qemu board? Only it carries vmlinuz and initrd.img on its boot partition',
    });
  }
  return {
    kernel: join(destDir, files.kernel),
    initrd: join(destDir, files.initrd),
    cmdline: (await readFile(join(destDir, files.cmdline), 'utf8')).trim(),
  };
}
