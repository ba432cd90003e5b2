import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFile, stat, writeFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PiImageError } from '../errors.js';
import { keyId, publicKeyFromPem } from '../../shared/ota/manifest.js';

// The cluster owner's update key: an Ed25519 pair. The private half stays on the host (0600,
// refused when others can read it, as ssh does); images trust the public half.

/** A key pair as the files hold it: a new one, or the public half of `privateKey`. */
export function keyPairPem(privateKey: KeyObject = generateKeyPairSync('ed25519').privateKey): { privatePem: string; publicPem: string } {
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicPem: createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }) as string,
  };
}

/** The update key in PEM text, checked to be an Ed25519 private key. */
export function parsePrivateKey(pem: string, what: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw new PiImageError(`${what} is not a private key in PEM: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new PiImageError(`${what} is a ${key.asymmetricKeyType} key; update keys are Ed25519 (pi-image keys new)`);
  return key;
}

export async function newKeyPair(dir: string, name: string, force = false): Promise<{ privatePath: string; publicPath: string; id: string }> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) throw new PiImageError(`key name ${JSON.stringify(name)} may hold only letters, digits, . _ and -`);
  const privatePath = join(dir, `${name}.key`);
  const publicPath = join(dir, `${name}.pub`);
  for (const path of [privatePath, publicPath]) {
    if (!force && (await stat(path).then(() => true, () => false))) throw new PiImageError(`${path} exists: not replacing an update key (images trust it)`, 'give another --name, or --force to replace it');
  }
  const { privatePem, publicPem } = keyPairPem();
  // Written under temporary names and renamed: never a half-written key.
  const tmpPrivate = `${privatePath}.partial`;
  const tmpPublic = `${publicPath}.partial`;
  try {
    await writeFile(tmpPrivate, privatePem, { mode: 0o600, flag: 'wx' });
    await writeFile(tmpPublic, publicPem, { mode: 0o644, flag: 'wx' });
    await rename(tmpPrivate, privatePath);
    await rename(tmpPublic, publicPath);
  } catch (e) {
    await rm(tmpPrivate, { force: true });
    await rm(tmpPublic, { force: true });
    throw e;
  }
  return { privatePath, publicPath, id: keyId(createPublicKey(publicPem)) };
}

export async function loadPrivateKey(path: string): Promise<KeyObject> {
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) throw new PiImageError(`update key ${path} does not exist`, 'make one with `pi-image keys new`');
  if (st.mode & 0o077) throw new PiImageError(`update key ${path} can be read by others (mode ${(st.mode & 0o777).toString(8)})`, `chmod 600 ${path}`);
  return parsePrivateKey(await readFile(path, 'utf8'), path);
}

export async function loadPublicKeys(paths: string[]): Promise<KeyObject[]> {
  return Promise.all(
    paths.map(async (path) => {
      const text = await readFile(path, 'utf8').catch(() => {
        throw new PiImageError(`public key ${path} cannot be read`);
      });
      try {
        return publicKeyFromPem(text, path);
      } catch (e) {
        throw new PiImageError((e as Error).message);
      }
    }),
  );
}
