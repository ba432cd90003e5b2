import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../../shared/atomic-write.js';
import { Command } from 'commander';
import { PiImageError } from '../errors.js';
import { checkBootconf, CONFIG_FILE, eepromSignature, parseBootconf, parseSections, readEepromFile, replaceEepromFile, setBootconfKeys } from '../firmware/eeprom.js';
import { silentReporter } from '../progress.js';
import { reportError } from './report-error.js';

async function readImage(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    throw new PiImageError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

async function writeAtomically(path: string, data: string | Uint8Array): Promise<void> {
  try {
    await writeFileAtomic(path, data);
  } catch (e) {
    throw new PiImageError(`cannot write ${path}: ${(e as Error).message}`);
  }
}

function signaturePath(imagePath: string): string {
  return `${imagePath.replace(/\.(upd|bin)$/, '')}.sig`;
}

function withErrors<A extends unknown[]>(action: (...args: A) => Promise<void>) {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (e) {
      reportError(e, silentReporter);
      process.exitCode = 1;
    }
  };
}

export function eepromCommand(): Command {
  const eeprom = new Command('eeprom').description('Read and change the Raspberry Pi 5 bootloader EEPROM image (pieeprom.bin) and its bootconf.txt');
  eeprom
    .command('show')
    .description('print the sections of a bootloader image and its bootconf.txt')
    .argument('<pieeprom.bin>', 'a 2 MiB Pi 5 bootloader image')
    .option('--json', 'sections and settings as JSON')
    .action(
      withErrors(async (path: string, options: { json?: boolean }) => {
        const image = await readImage(path);
        if (options.json) {
          const bootconf = readEepromFile(image).toString('utf8');
          const sections = parseSections(image).map((s) => ({ offset: s.offset, kind: s.kind, magic: s.magic, length: s.length, ...(s.name ? { name: s.name } : {}) }));
          process.stdout.write(`${JSON.stringify({ sections, bootconf, settings: parseBootconf(bootconf) })}\n`);
          return;
        }
        for (const s of parseSections(image)) {
          process.stdout.write(`0x${s.offset.toString(16).padStart(6, '0')}  ${s.kind.padEnd(8)}  magic 0x${s.magic.toString(16)}  length ${s.length}${s.name ? `  ${s.name}` : ''}\n`);
        }
        process.stdout.write(`\n# ${CONFIG_FILE}\n${readEepromFile(image).toString('utf8')}`);
      }),
    );
  eeprom
    .command('set')
    .description(`write a copy of a bootloader image with bootconf.txt settings changed, and its signature file (<out> without .upd/.bin, plus .sig)`)
    .argument('<in>', 'source bootloader image')
    .argument('<out>', 'image to write, e.g. pieeprom.upd (its signature goes to pieeprom.sig)')
    .argument('<KEY=VALUE...>', 'settings, e.g. BOOT_ORDER=0xf416 SDRAM_BANKLOW=1')
    .option('--timestamp <unix>', 'ts: value of the signature (default: SOURCE_DATE_EPOCH, else now)')
    .action(
      withErrors(async (input: string, output: string, pairs: string[], options: { timestamp?: string }) => {
        const settings: Record<string, string> = {};
        for (const pair of pairs) {
          const eq = pair.indexOf('=');
          if (eq <= 0) throw new PiImageError(`"${pair}" is not KEY=VALUE`, 'e.g. BOOT_ORDER=0xf416');
          settings[pair.slice(0, eq)] = pair.slice(eq + 1);
        }
        checkBootconf(settings);
        const image = await readImage(input);
        const config = setBootconfKeys(readEepromFile(image).toString('utf8'), settings);
        const updated = replaceEepromFile(image, Buffer.from(config));
        const ts = Number(options.timestamp ?? process.env.SOURCE_DATE_EPOCH ?? Math.floor(Date.now() / 1000));
        if (!Number.isInteger(ts) || ts < 0) throw new PiImageError(`--timestamp must be a unix time, not "${options.timestamp}"`);
        await writeAtomically(output, updated);
        await writeAtomically(signaturePath(output), eepromSignature(updated, ts));
        process.stdout.write(`wrote ${output} and ${signaturePath(output)}\n`);
      }),
    );
  return eeprom;
}
