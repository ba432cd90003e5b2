import { createInterface } from 'node:readline/promises';
import { Command } from 'commander';
import { PiImageError } from '../errors.js';
import { flash } from '../flash/flash.js';
import { formatCandidates, listCandidates } from '../flash/list.js';
import { formatBytes, type DeviceInfo } from '../flash/safety.js';
import { formatSeconds } from '../progress.js';
import { runCancellable } from './cancellable.js';

async function askOnTerminal(device: DeviceInfo): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(
      `\nAbout to overwrite ${device.path}: ${device.model}, ${formatBytes(device.size)}${device.removable ? ', removable' : ', NOT removable'}.\nEverything on it will be lost. Type 'yes' to go on: `,
    );
    return answer.trim().toLowerCase() === 'yes';
  } finally {
    rl.close();
  }
}

export function flashCommand(): Command {
  return new Command('flash')
    .description('Write an image (.img or .img.zst) to a card, disk or file: only the blocks its .bmap maps, then read them back and check them')
    .argument('[image]', 'the .img or .img.zst (its .bmap beside it is used)')
    .argument('[target]', 'a block device (/dev/sdX, /dev/mmcblkN) or a regular file')
    .option('--bmap <file>', 'the block map to use (default: <name>.bmap beside the image)')
    .option('--no-bmap', 'write every byte of the image, ignoring any bmap')
    .option('--no-verify', 'skip reading the written blocks back')
    .option('--verify-only', 'write nothing: check the target against the image')
    .option('--force', 'write a device that is not removable (never a mounted one or the running system)')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--list', 'list the disks that could be written, and exit')
    .option('-v, --verbose', "stream the underlying tools' output")
    .option('--json', 'print machine-readable events (NDJSON) on stdout instead of the progress display')
    .action((image: string | undefined, target: string | undefined, options: Record<string, unknown>) =>
      runCancellable(options, async ({ reporter, signal }) => {
        if (options.list) {
          const list = await listCandidates(reporter);
          if (options.json) reporter.emit({ type: 'result', data: list });
          else process.stdout.write(formatCandidates(list));
          return;
        }
        if (!image || !target) throw new PiImageError('usage: pi-image flash <image.img | image.img.zst> <target>  (or --list)');
        const interactive = Boolean(process.stdin.isTTY && process.stderr.isTTY);
        const result = await flash({
          image,
          target,
          bmap: options.bmap as string | false | undefined,
          verify: options.verify !== false,
          verifyOnly: Boolean(options.verifyOnly),
          force: Boolean(options.force),
          confirm: options.yes ? async () => true : interactive ? askOnTerminal : undefined,
          reporter,
          signal,
        });
        reporter.emit({ type: 'result', data: result });
        if (!options.json) {
          const what = result.verifyOnly ? 'checked' : 'wrote';
          process.stderr.write(
            `\n${what} ${result.verifyOnly ? result.target : formatBytes(result.bytesWritten)} ${result.bmap ? `(bmap ${result.bmap})` : '(every byte, no bmap)'} ${result.verifyOnly ? 'against the image' : `to ${result.target}`} in ${formatSeconds(result.writeSeconds + result.verifySeconds)}${result.verified ? ', verified' : ', NOT verified (--no-verify)'}\n`,
          );
        }
      }),
    );
}
