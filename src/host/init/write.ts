import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
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
      const usable = old !== undefined && (() => {
        try {
          return createPrivateKey(old).asymmetricKeyType === 'ed25519';
        } catch {
          return false;
        }
      })();
      if (usable) {
        // The same update key as before (images trust it): its public half is written again from it.
        await chmod(file.path, file.mode);
        await writeFileAtomic(file.publicPath, createPublicKey(createPrivateKey(old as string)).export({ type: 'spki', format: 'pem' }) as string, 0o644);
        written.push({ path: file.path, what: file.what, mode: file.mode, kept: true });
        continue;
      }
      if (old !== undefined && !opts.force) throw new ConfigError(`${file.path} exists and is not an Ed25519 private key; nothing was written`, 'pass --force to replace it');
      const pair = generateKeyPairSync('ed25519');
      await writeFileAtomic(file.path, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, file.mode);
      await writeFileAtomic(file.publicPath, pair.publicKey.export({ type: 'spki', format: 'pem' }) as string, 0o644);
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
