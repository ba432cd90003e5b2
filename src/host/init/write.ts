import { randomBytes, type KeyObject } from 'node:crypto';
import { keyPairPem, parsePrivateKey } from '../ota/keys.js';
import { chmod, readFile, stat } from 'node:fs/promises';
import { writeFileAtomic } from '../../shared/atomic-write.js';
import { secretProblem } from '../../shared/secrets.js';
import { ConfigError } from '../errors.js';
import type { InitFile } from './render.js';

export interface Written {
  path: string;
  what: string;
  mode: number;
  /** A secret file that was there already and is kept (the same cluster), not made anew. */
  kept: boolean;
}

const exists = (path: string) => stat(path).then(() => true, () => false);

/** Refuses an existing config unless `force`: checked before any question is asked, and again when writing. */
export async function checkConfigTarget(path: string, force: boolean): Promise<void> {
  if (!force && (await exists(path))) {
    throw new ConfigError(`${path} exists already; nothing was written`, 'pass --force to replace it, or --out-config PATH to write another file');
  }
}

/**
 * Writes the files of renderInit: secrets first (fresh random bytes, 0600; an existing usable
 * one is kept, so re-running init does not re-key the cluster), the config last. A secret's
 * content is never returned, printed or logged.
 */
export async function writeInitFiles(files: InitFile[], opts: { force: boolean }): Promise<Written[]> {
  const written: Written[] = [];
  const ordered = [...files.filter((f) => !('content' in f)), ...files.filter((f) => 'content' in f)];
  for (const file of ordered) {
    if ('keyPair' in file) {
      const old = await readFile(file.path, 'utf8').catch(() => undefined);
      let kept: KeyObject | undefined;
      try {
        kept = old === undefined ? undefined : parsePrivateKey(old, file.path);
      } catch {
        if (!opts.force) throw new ConfigError(`${file.path} exists and is not an Ed25519 private key; nothing was written`, 'pass --force to replace it');
      }
      // The same update key as before (images trust it): its public half is written again from it.
      const { privatePem, publicPem } = keyPairPem(kept);
      if (kept) await chmod(file.path, file.mode);
      else await writeFileAtomic(file.path, privatePem, file.mode);
      await writeFileAtomic(file.publicPath, publicPem, 0o644);
      if (kept) {
        written.push({ path: file.path, what: file.what, mode: file.mode, kept: true });
        continue;
      }
    } else if ('random' in file) {
      const old = await readFile(file.path).catch(() => undefined);
      if (old && !secretProblem(old)) {
        await chmod(file.path, file.mode);
        written.push({ path: file.path, what: file.what, mode: file.mode, kept: true });
        continue;
      }
      if (old && !opts.force) throw new ConfigError(`${file.path} exists and is not a usable secret (it ${secretProblem(old)}); nothing was written`, 'pass --force to replace it');
      await writeFileAtomic(file.path, `${randomBytes(32).toString('hex')}\n`, file.mode);
    } else {
      await checkConfigTarget(file.path, opts.force);
      await writeFileAtomic(file.path, file.content, file.mode);
    }
    written.push({ path: file.path, what: file.what, mode: file.mode, kept: false });
  }
  return written;
}
