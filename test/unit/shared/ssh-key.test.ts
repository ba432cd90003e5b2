import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parsePublicKeyFile, parsePublicKeyLine } from '../../../src/shared/ssh-key.js';
import { REPO } from '../../helpers/cli.js';

const FIXTURE = readFileSync(join(REPO, 'test/fixtures/test-login-key.pub'), 'utf8');
/** A key blob of `type`: its name, length-prefixed, then some bytes. */
const blob = (type: string) => {
  const name = Buffer.from(type);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(name.length);
  return Buffer.concat([len, name, Buffer.alloc(36, 7)]).toString('base64');
};

describe('SSH public keys', () => {
  it('parse: type, base64 data of that type, comment', () => {
    expect(parsePublicKeyLine(FIXTURE.trim())).toMatchObject({ type: 'ssh-ed25519' });
    expect(parsePublicKeyLine(` ecdsa-sha2-nistp256 ${blob('ecdsa-sha2-nistp256')} me@lab `)).toEqual({ type: 'ecdsa-sha2-nistp256', comment: 'me@lab', line: `ecdsa-sha2-nistp256 ${blob('ecdsa-sha2-nistp256')} me@lab` });
    expect(parsePublicKeyFile(`# my keys\n${FIXTURE}\nssh-rsa ${blob('ssh-rsa')}\n`)).toHaveLength(2);
  });

  it('name what is wrong', () => {
    expect(parsePublicKeyLine('hello world')).toEqual({ problem: expect.stringMatching(/does not start with a key type .* but "hello"/) });
    expect(parsePublicKeyLine('ssh-ed25519 not*base64')).toEqual({ problem: 'has a ssh-ed25519 key whose data is not base64' });
    expect(parsePublicKeyLine(`ssh-ed25519 ${blob('ssh-rsa')}`)).toEqual({ problem: 'has key data that is not a ssh-ed25519 key' });
    expect(parsePublicKeyLine('-----BEGIN OPENSSH PRIVATE KEY-----')).toEqual({ problem: expect.stringContaining('is a PRIVATE key') });
    expect(parsePublicKeyFile('\n# nothing\n')).toEqual({ problem: 'holds no key' });
    expect(parsePublicKeyFile(`${FIXTURE}\ngarbage here\n`)).toEqual({ problem: expect.stringContaining('"garbage"') });
  });
});
