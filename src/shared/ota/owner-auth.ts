import { sign, verify, type KeyObject } from 'node:crypto';
import { keyId } from './manifest.js';

/**
 * The owner's requests to a root (`ota push`, `ota status`) are signed with an update key, the
 * credential only the owner has (not the inference API token): the root hands out a one-time
 * nonce, the owner signs method, path and nonce with Ed25519, and the root checks the
 * signature against the keys its image trusts. A captured request cannot be replayed (the
 * nonce is gone) or turned into another one (method and path are signed).
 */
export const OWNER_AUTH_SCHEME = 'PiImage-Ed25519';

const signedText = (method: string, path: string, nonce: string) => Buffer.from(`pi-image-ota\n${method.toUpperCase()}\n${path}\n${nonce}`);

export function ownerAuthorization(privateKey: KeyObject, publicKey: KeyObject, method: string, path: string, nonce: string): string {
  return `${OWNER_AUTH_SCHEME} key=${keyId(publicKey)},nonce=${nonce},sig=${sign(null, signedText(method, path, nonce), privateKey).toString('base64')}`;
}

/** The trusted key that signed this request, or the reason it is refused. */
export function checkOwnerAuthorization(header: string | undefined, method: string, path: string, trusted: KeyObject[], takeNonce: (nonce: string) => boolean): { key: string } | { problem: string } {
  if (!header?.startsWith(`${OWNER_AUTH_SCHEME} `)) return { problem: `no ${OWNER_AUTH_SCHEME} authorization: sign the request with an update key (pi-image ota … --key)` };
  const fields = Object.fromEntries(header.slice(OWNER_AUTH_SCHEME.length + 1).split(',').map((f) => [f.slice(0, f.indexOf('=')).trim(), f.slice(f.indexOf('=') + 1).trim()]));
  const key = trusted.find((k) => keyId(k) === fields.key);
  if (!key) return { problem: `key ${String(fields.key)} is not one this cluster trusts (ota.trusted_keys)` };
  if (!fields.nonce || !takeNonce(fields.nonce)) return { problem: 'the nonce is unknown, used or expired: ask for a new one' };
  const sig = Buffer.from(fields.sig ?? '', 'base64');
  if (sig.length !== 64 || !verify(null, signedText(method, path, fields.nonce), key, sig)) return { problem: `the signature does not match key ${keyId(key)}` };
  return { key: keyId(key) };
}
