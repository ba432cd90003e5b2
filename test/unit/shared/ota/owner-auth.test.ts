import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkOwnerAuthorization, ownerAuthorization } from '../../../../src/shared/ota/owner-auth.js';

describe("the owner's signed requests to a root", () => {
  const owner = generateKeyPairSync('ed25519');
  const stranger = generateKeyPairSync('ed25519');
  const nonces = () => {
    const open = new Set(['n1', 'n2', 'n3', 'n4']);
    return (n: string) => open.delete(n);
  };

  it('accepts a trusted key over a fresh nonce, once; refuses replays, other keys, other requests', () => {
    const take = nonces();
    const header = ownerAuthorization(owner.privateKey, owner.publicKey, 'POST', '/ota/push', 'n1');
    expect(checkOwnerAuthorization(header, 'POST', '/ota/push', [stranger.publicKey, owner.publicKey], take)).toHaveProperty('key');
    expect(checkOwnerAuthorization(header, 'POST', '/ota/push', [owner.publicKey], take)).toEqual({ problem: expect.stringMatching(/nonce is unknown, used or expired/) });
    // Signed for status, sent as a push: refused.
    const status = ownerAuthorization(owner.privateKey, owner.publicKey, 'GET', '/ota/status', 'n2');
    expect(checkOwnerAuthorization(status, 'POST', '/ota/push', [owner.publicKey], take)).toEqual({ problem: expect.stringMatching(/signature does not match/) });
    const other = ownerAuthorization(stranger.privateKey, stranger.publicKey, 'GET', '/ota/status', 'n3');
    expect(checkOwnerAuthorization(other, 'GET', '/ota/status', [owner.publicKey], take)).toEqual({ problem: expect.stringMatching(/is not one this cluster trusts/) });
    // A key id copied onto another key's signature.
    const forged = other.replace(/key=\w+/, ownerAuthorization(owner.privateKey, owner.publicKey, 'GET', '/', 'x').match(/key=\w+/)?.[0] ?? '');
    expect(checkOwnerAuthorization(forged.replace('nonce=n3', 'nonce=n4'), 'GET', '/ota/status', [owner.publicKey], take)).toEqual({ problem: expect.stringMatching(/signature does not match/) });
    expect(checkOwnerAuthorization(undefined, 'GET', '/ota/status', [owner.publicKey], take)).toEqual({ problem: expect.stringMatching(/no PiImage-Ed25519 authorization/) });
  });
});
