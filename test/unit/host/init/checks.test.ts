import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  absolutePath,
  checkBaseImage,
  checkClusterName,
  checkClusterSize,
  checkDllamaDir,
  checkModel,
  checkSha256,
  checkSshKeyFile,
  checkTokenizer,
} from '../../../../src/host/init/questions.js';
import { ENGINES } from '../../../../src/shared/engines/index.js';
import { REPO } from '../../../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'pi-image-init-checks-'));
const file = (name: string, text = 'x') => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe('init checks', () => {
  it('cluster name: the schema pattern, said in words', () => {
    expect(checkClusterName('lab-1')).toBeUndefined();
    expect(checkClusterName('Lab')).toBe('cluster name "Lab" must start with a lower-case letter and hold only a-z, 0-9 and -, at most 24 characters');
    expect(checkClusterName('a'.repeat(25))).toMatch(/at most 24/);
  });

  it("cluster size: 1-8, and the engine's own rule (dllama: a power of two)", () => {
    expect(checkClusterSize('3', 'llama.cpp')).toBeUndefined();
    expect(checkClusterSize('4', 'dllama')).toBeUndefined();
    expect(checkClusterSize('3', 'dllama')).toBe(ENGINES.dllama.checkCluster(3, {})[0]);
    expect(checkClusterSize('3', 'dllama')).toBe('dllama needs a power-of-two number of nodes (root included), not 3');
    expect(checkClusterSize('9', 'llama.cpp')).toBe('cluster size must be from 1 to 8 nodes (root included), not 9');
    expect(checkClusterSize('two', 'llama.cpp')).toBe('cluster size must be a whole number from 1 to 8, not "two"');
  });

  it('sha256: 64 hex digits (upper case accepted)', () => {
    expect(checkSha256('a'.repeat(64))).toBeUndefined();
    expect(checkSha256('A'.repeat(64))).toBeUndefined();
    expect(checkSha256('abc')).toBe('a SHA-256 is 64 hex digits (0-9, a-f); "abc" has 3 characters');
    expect(checkSha256('g'.repeat(64))).toMatch(/has 64 characters and others than hex digits/);
  });

  it('model: exists, and the file type of the engine', async () => {
    expect(await checkModel(file('m.gguf'), 'llama.cpp')).toBeUndefined();
    expect(await checkModel(file('m.m'), 'dllama')).toBeUndefined();
    expect(await checkModel(join(dir, 'none.gguf'), 'llama.cpp')).toBe(`model file ${join(dir, 'none.gguf')} does not exist`);
    expect(await checkModel(dir, 'llama.cpp')).toBe(`model file ${dir} is not a file`);
    expect(await checkModel(join(dir, 'm.m'), 'llama.cpp')).toBe(`llama.cpp loads .gguf model files, not .m (${join(dir, 'm.m')})`);
    expect(await checkTokenizer(file('t.t'))).toBeUndefined();
    expect(await checkTokenizer(join(dir, 'm.gguf'))).toMatch(/tokenizer is a \.t file/);
  });

  it('dllama folder: both binaries, executable', async () => {
    const bin = join(dir, 'dllama-bin');
    mkdirSync(bin);
    expect(await checkDllamaDir(bin)).toBe(`${join(bin, 'dllama')} is missing or not executable; the folder must hold prebuilt arm64 dllama and dllama-api binaries`);
    for (const b of ['dllama', 'dllama-api']) {
      writeFileSync(join(bin, b), '');
      chmodSync(join(bin, b), 0o755);
    }
    expect(await checkDllamaDir(bin)).toBeUndefined();
    expect(await checkDllamaDir(join(dir, 'nope'))).toBe(`dllama folder ${join(dir, 'nope')} does not exist`);
  });

  it('SSH key file: readable and a public key', async () => {
    expect(await checkSshKeyFile(join(REPO, 'test/fixtures/test-login-key.pub'))).toBeUndefined();
    expect(await checkSshKeyFile(join(dir, 'none.pub'))).toBe(`cannot read SSH key file ${join(dir, 'none.pub')}`);
    const priv = file('id_ed25519', '-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n');
    expect(await checkSshKeyFile(priv)).toBe(`SSH key file ${priv} is a PRIVATE key: never put that in an image (give the .pub file)`);
  });

  it('base image: an http(s) URL or a file here', async () => {
    const ctx = { cwd: dir, home: '/home/x' };
    expect(await checkBaseImage('https://downloads.raspberrypi.com/x.img.xz', ctx)).toBeUndefined();
    expect(await checkBaseImage(file('os.img.xz'), ctx)).toBeUndefined();
    expect(await checkBaseImage('os.img.xz', ctx)).toBeUndefined();
    expect(await checkBaseImage('ftp://host/os.img', ctx)).toBe('base image: only http(s) URLs can be downloaded, not ftp://host/os.img');
    expect(await checkBaseImage('missing.img', ctx)).toBe(`base image ${join(dir, 'missing.img')} does not exist (give the .img / .img.xz file or its https:// URL)`);
  });

  it('typed paths: ~ and relative ones made absolute', () => {
    expect(absolutePath('~/.ssh/id.pub', { cwd: '/w', home: '/home/x' })).toBe('/home/x/.ssh/id.pub');
    expect(absolutePath(' m.gguf ', { cwd: '/w', home: '/home/x' })).toBe('/w/m.gguf');
  });
});
