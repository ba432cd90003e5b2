import { chmod, mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ConfigError } from '../errors.js';
import type { Plan } from '../plan/plan.js';

/**
 * The boot partition inside the .img (and so the .img.zst) carries the cluster secret and
 * the API token, and a cluster secret nobody gave is published beside them: those files are
 * the owner's alone, and so is the folder. The .bmap, SHA256SUMS and manifest.json hold no
 * secret (the manifest's config is redacted) and stay readable, for whoever is let into the
 * folder or is sent them to check a download.
 */
export const OUTPUT_DIR_MODE = 0o700;
export const SECRET_FILE_MODE = 0o600;
const PLAIN_FILE_MODE = 0o644;

/** The mode of a file in the output folder: private when it carries a secret. */
export function outputFileMode(plan: Plan, file: string): number {
  const secretBearing = [plan.outputs.img, plan.outputs.zst, ...plan.node.secrets.map((s) => s.name)];
  return secretBearing.includes(file) ? SECRET_FILE_MODE : PLAIN_FILE_MODE;
}

/** An existing --out must be empty or an earlier pi-image output: it is replaced whole. */
export async function checkOutDir(outDir: string): Promise<void> {
  const st = await stat(outDir).catch(() => undefined);
  if (!st) return;
  if (!st.isDirectory()) throw new ConfigError(`--out ${outDir} exists and is not a directory`, 'choose a new or empty directory');
  const entries = await readdir(outDir);
  if (!entries.length) return;
  const manifest = await readFile(join(outDir, 'manifest.json'), 'utf8').catch(() => '');
  if (!manifest.includes('"pi-image"')) {
    throw new ConfigError(
      `--out ${outDir} is not empty and holds no earlier pi-image build; pi-image replaces its output directory as a whole`,
      'choose a new or empty directory',
    );
  }
}

/** The folder a build writes into: a sibling of --out (so the final rename stays on one file system), private from the start (mkdtemp makes it 0700). */
export function makeWorkDir(outDir: string): Promise<string> {
  return mkdtemp(join(dirname(outDir), `.${basename(outDir)}.pi-image-tmp-`));
}

/**
 * Replaces --out with the finished work directory; the old output is removed only after the
 * swap. Modes are set before the rename, which keeps them: the output is never readable by
 * others, not even for a moment.
 */
export async function publish(workDir: string, outDir: string, plan: Plan): Promise<void> {
  for (const entry of await readdir(workDir, { withFileTypes: true })) {
    if (entry.isFile()) await chmod(join(workDir, entry.name), outputFileMode(plan, entry.name));
  }
  await chmod(workDir, OUTPUT_DIR_MODE);
  const previous = `${outDir}.pi-image-old-${process.pid}`;
  const hadOld = await stat(outDir).then(() => true, () => false);
  if (hadOld) await rename(outDir, previous);
  try {
    await rename(workDir, outDir);
  } catch (e) {
    if (hadOld) await rename(previous, outDir);
    throw e;
  }
  if (hadOld) await rm(previous, { recursive: true, force: true });
}
