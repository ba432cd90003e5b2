import { linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { planNode, versionFromSourceName } from '../../../../src/host/plan/node-plan.js';
import { DLLAMA_SOURCES, vendored } from '../../../helpers/vendor.js';
import { loadBoard } from '../../../../src/host/catalog/boards.js';
import { resolveConfig } from '../../../../src/host/config/config.js';
import { moveSecretOffBootPartition } from '../../../../src/node/first-boot.js';
import { broadcastOf, sameSubnet } from '../../../../src/node/identity.js';
import { REPO } from '../../../helpers/cli.js';
import { keyId } from '../../../../src/shared/ota/manifest.js';
import { tinyGguf } from '../../../../src/host/model/tiny-gguf.js';
import { dllamaModelHeader } from '../../../helpers/dllama-model.js';

const work = mkdtempSync(join(tmpdir(), 'pi-image-node-setup-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('secret off the boot partition', () => {
  it('copies it to /etc/pi-image with mode 0600, overwrites its bytes on the FAT, then deletes it', async () => {
    const boot = join(work, 'boot/pi-image');
    const etc = join(work, 'etc');
    mkdirSync(boot, { recursive: true });
    writeFileSync(join(boot, 'cluster.secret'), 'very-secret-value\n');
    // A second name for the same inode shows what is left in the file's blocks after the delete.
    linkSync(join(boot, 'cluster.secret'), join(work, 'same-blocks'));
    const lines: string[] = [];
    expect(await moveSecretOffBootPartition('cluster.secret', (l) => lines.push(l), boot, etc)).toBe(true);
    expect(readFileSync(join(etc, 'cluster.secret'), 'utf8')).toBe('very-secret-value\n');
    expect(statSync(join(etc, 'cluster.secret')).mode & 0o777).toBe(0o600);
    expect(existsSync(boot)).toBe(false);
    expect(readFileSync(join(work, 'same-blocks'))).toEqual(Buffer.alloc(18));
    expect(lines.join('\n')).not.toContain('very-secret-value');
    expect(await moveSecretOffBootPartition('cluster.secret', () => undefined, boot, etc)).toBe(false);
  });
});

describe('node plan', () => {
  // Relative paths are relative to the config file's folder: `work` here.
  const plan = async (config: Record<string, unknown>, board = 'qemu') => planNode(resolveConfig({ board, ...config }, {}, { dir: work }), await loadBoard(board));
  writeFileSync(join(work, 'tiny.gguf'), tinyGguf({ kvHeads: 2, heads: 4 }));
  writeFileSync(join(work, 'key.pub'), readFileSync(join(REPO, 'test/fixtures/test-login-key.pub')));
  writeFileSync(join(work, 'id_ed25519'), '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n');
  writeFileSync(join(work, 'short.secret'), 'abc\n');

  it('bakes the model into the image and tells the agent where it is', async () => {
    const p = await plan({ model: { path: 'tiny.gguf' }, user: { ssh_keys: ['key.pub'] }, cluster: { name: 'lab', size: 3 } });
    expect(p.settings).toMatchObject({ cluster: { name: 'lab', size: 3, apiPort: 8080 }, engine: { name: 'llama.cpp' }, model: { path: '/var/lib/pi-image/model/current/tiny.gguf', name: 'tiny' }, user: { name: 'pi' } });
    // The model in the versioned layout an OTA model update replaces; the engine loads it through `current`.
    expect(p.files.map((f) => f.target)).toEqual(['var/lib/pi-image/model/versions/tiny/tiny.gguf']);
    expect(p.modelInfo).toEqual({ engine: 'llama.cpp', version: 'tiny', file: 'tiny.gguf' });
    const versioned = await plan({ model: { path: 'tiny.gguf', version: '2026.1' }, ota: { keep_versions: 5 } });
    expect(versioned.files.map((f) => f.target)).toEqual(['var/lib/pi-image/model/versions/2026.1/tiny.gguf']);
    // How many versions a node keeps after an update: ota.keep_versions, 3 by default.
    expect([p.settings.ota, versioned.settings.ota]).toEqual([{ keepVersions: 3 }, { keepVersions: 5 }]);
    expect(p.authorizedKeys).toMatch(/^ssh-ed25519 /);
    expect(p.secrets).toEqual([{ name: 'cluster.secret', source: null }]);
  });

  it('reads the model header: a file that is not GGUF is refused, and dllama cannot split a model over more nodes than it has KV heads', async () => {
    writeFileSync(join(work, 'fake.gguf'), 'this is text, not a model');
    await expect(plan({ model: { path: 'fake.gguf' } })).rejects.toThrow(/fake.gguf: it is not a GGUF file/);
    await expect(plan({ engine: { name: 'dllama' } })).rejects.toThrow(/give engine.source \(its source tarball, compiled during the build\) or engine.dllama_dir/);
    writeFileSync(join(work, 'two-kv.m'), dllamaModelHeader({ kvHeads: 2 }));
    writeFileSync(join(work, 'two-kv.t'), 'tokenizer');
    const bin = join(work, 'kv-bin');
    mkdirSync(bin, { recursive: true });
    for (const name of ['dllama', 'dllama-api']) writeFileSync(join(bin, name), '#!/bin/sh\n', { mode: 0o755 });
    const dllama = { engine: { name: 'dllama', dllama_dir: bin }, model: { path: 'two-kv.m', tokenizer: 'two-kv.t' } };
    await expect(plan({ ...dllama, cluster: { size: 4 } })).rejects.toThrow(/cannot split the model over 4 nodes: it has 2 KV heads/);
    await expect(plan({ ...dllama, cluster: { size: 2 } })).resolves.toBeDefined();
    writeFileSync(join(work, 'not-a-model.m'), 'text');
    await expect(plan({ ...dllama, model: { path: 'not-a-model.m', tokenizer: 'two-kv.t' }, cluster: { size: 2 } })).rejects.toThrow(/not a distributed-llama model/);
  });

  it('refuses a private key, a short secret, a model llama.cpp cannot load and a dllama cluster that is no power of two', async () => {
    await expect(plan({ user: { ssh_keys: ['id_ed25519'] } })).rejects.toThrow(/PRIVATE key/);
    await expect(plan({ cluster: { secret_file: 'short.secret' } })).rejects.toThrow(/at least 16/);
    await expect(plan({ cluster: { secret_file: 'missing.secret' } })).rejects.toThrow(/cannot read/);
    writeFileSync(join(work, 'model.bin'), 'x');
    await expect(plan({ model: { path: 'model.bin' } })).rejects.toThrow(/\.gguf/);
    await expect(plan({ cluster: { size: 3 } }, 'pi5')).rejects.toThrow(/power-of-two/);
    await expect(plan({ engine: { name: 'dllama', dllama_dir: work }, cluster: { size: 2 } })).rejects.toThrow(/dllama is missing or not executable|dllama-api is missing/);
  });
});

describe('OTA trusted keys', () => {
  const plan = async (config: Record<string, unknown>) => planNode(resolveConfig({ board: 'qemu', ...config }, {}, { dir: work }), await loadBoard('qemu'));

  it('puts each public update key into the image under its key id; refuses a private key or another kind of key', async () => {
    const keys = ['one', 'two'].map((n) => generateKeyPairSync('ed25519'));
    keys.forEach((k, i) => writeFileSync(join(work, `ota-${i}.pub`), k.publicKey.export({ type: 'spki', format: 'pem' })));
    const p = await plan({ ota: { trusted_keys: ['ota-0.pub', 'ota-1.pub'] } });
    expect(p.files.map((f) => [f.target, f.mode])).toEqual(keys.map((k) => [`etc/pi-image/ota-keys/${keyId(k.publicKey)}.pub`, 0o644]));
    writeFileSync(join(work, 'ota.key'), keys[0]!.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await expect(plan({ ota: { trusted_keys: ['ota.key'] } })).rejects.toThrow(/ota.key is a PRIVATE key: never put that in an image/);
    writeFileSync(join(work, 'rsa.pub'), generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }));
    await expect(plan({ ota: { trusted_keys: ['rsa.pub'] } })).rejects.toThrow(/rsa.pub is a rsa key, not Ed25519/);
    await expect(plan({ ota: { trusted_keys: ['missing.pub'] } })).rejects.toThrow(/ota.trusted_keys: cannot read/);
  });
});

describe('bring-your-own dllama', () => {
  it('copies the binaries, the model and its tokenizer into the image', async () => {
    const dir = join(work, 'dllama-bin');
    mkdirSync(dir, { recursive: true });
    for (const name of ['dllama', 'dllama-api']) writeFileSync(join(dir, name), '#!/bin/sh\n', { mode: 0o755 });
    writeFileSync(join(work, 'qwen3.m'), dllamaModelHeader({ kvHeads: 4 }));
    writeFileSync(join(work, 'qwen3.t'), 'T');
    const p = await planNode(resolveConfig({ board: 'pi5', engine: { dllama_dir: dir }, model: { path: 'qwen3.m', tokenizer: 'qwen3.t' }, cluster: { size: 4 } }, {}, { dir: work }), await loadBoard('pi5'));
    expect(p.settings.engine.name).toBe('dllama');
    expect(p.settings.model).toEqual({ path: '/var/lib/pi-image/model/current/qwen3.m', name: 'qwen3', tokenizer: '/var/lib/pi-image/model/current/qwen3.t' });
    expect(p.modelInfo).toEqual({ engine: 'dllama', version: 'qwen3', file: 'qwen3.m', tokenizer: 'qwen3.t' });
    expect(p.files.map((f) => [f.target, f.mode.toString(8)])).toEqual([
      ['var/lib/pi-image/model/versions/qwen3/qwen3.m', '644'],
      ['var/lib/pi-image/model/versions/qwen3/qwen3.t', '644'],
      ['opt/pi-image/runtime/versions/0.16.4/dllama', '755'],
      ['opt/pi-image/runtime/versions/0.16.4/dllama-api', '755'],
    ]);
    // The first runtime in the OTA layout: the engine runs from `current`, launched as that version.
    expect(p.runtime).toEqual({ engine: 'dllama', version: '0.16.4', entry: { root: 'dllama-api', worker: 'dllama' } });
    expect(p.settings.engine.binDir).toBe('/opt/pi-image/runtime/current');
  });
});

describe('addresses', () => {
  it('finds broadcast addresses and subnets', () => {
    expect(broadcastOf('169.254.12.34', '255.255.0.0')).toBe('169.254.255.255');
    expect(broadcastOf('192.168.1.20', '255.255.255.0')).toBe('192.168.1.255');
    expect(sameSubnet('169.254.1.1', '169.254.200.3', '255.255.0.0')).toBe(true);
    expect(sameSubnet('10.0.2.15', '169.254.200.3', '255.255.255.0')).toBe(false);
  });
});

describe('dllama from its source tarball', () => {
  const config = (engine: Record<string, unknown>, board = 'qemu') => resolveConfig({ board, engine: { name: 'dllama', ...engine } }, {});
  const plan = async (engine: Record<string, unknown>, board = 'qemu') => planNode(config(engine, board), await loadBoard(board));
  const failure = (engine: Record<string, unknown>, board = 'qemu') => plan(engine, board).then(() => '', (e: Error) => e.message);
  const source = () => vendored(DLLAMA_SOURCES['0.16.4'].file);

  it("plans the compile for the board's CPU with the version read from the tarball's name, and tells the agent that version", async () => {
    const node = await plan({ source: source(), sha256: DLLAMA_SOURCES['0.16.4'].sha256 });
    expect(node.engineBuild).toEqual({
      engine: 'dllama',
      version: '0.16.4',
      source: source(),
      sha256: DLLAMA_SOURCES['0.16.4'].sha256,
      cxx: process.arch === 'arm64' ? 'g++' : 'aarch64-linux-gnu-g++',
      cxxflags: '-std=c++11 -O3 -mcpu=cortex-a76',
      libs: '-lpthread -static',
      targets: ['dllama', 'dllama-api'],
    });
    expect(node.settings.engine.version).toBe('0.16.4');
    expect((await plan({ source: source(), sha256: DLLAMA_SOURCES['0.16.4'].sha256 }, 'pi4')).engineBuild?.cxxflags).toBe('-std=c++11 -O3 -mcpu=cortex-a72');
    expect((await plan({ source: source(), sha256: DLLAMA_SOURCES['0.16.4'].sha256, version: '0.16.3' })).settings.engine.version).toBe('0.16.3');
  });

  it('reads versions from release names, and refuses what it cannot build or does not know', async () => {
    expect(versionFromSourceName('/x/distributed-llama-0.16.4.tar.gz')).toBe('0.16.4');
    expect(versionFromSourceName('https://example.org/archive/refs/tags/v0.16.3.tar.gz')).toBe('0.16.3');
    expect(versionFromSourceName('/x/dllama-main.tar.gz')).toBeUndefined();
    expect(await failure({ source: source() })).toMatch(/engine\.source needs engine\.sha256/);
    expect(await failure({ source: join(work, 'nope-0.16.4.tar.gz'), sha256: '0'.repeat(64) })).toMatch(/engine\.source: .*nope-0\.16\.4\.tar\.gz does not exist/);
    const unnamed = join(work, 'dllama-main.tar.gz');
    writeFileSync(unnamed, 'x');
    expect(await failure({ source: unnamed, sha256: '0'.repeat(64) })).toMatch(/engine\.version: cannot tell the dllama version from the name dllama-main\.tar\.gz/);
    const old = join(work, 'distributed-llama-0.15.0.tar.gz');
    writeFileSync(old, 'x');
    expect(await failure({ source: old, sha256: '0'.repeat(64) })).toMatch(/dllama 0\.15\.0 is not a version pi-image knows the flags of/);
    expect(await failure({ source: source(), sha256: '0'.repeat(64), dllama_dir: work })).toMatch(/engine\.source and engine\.dllama_dir are both set/);
    expect(await planNode(resolveConfig({ board: 'qemu', engine: { name: 'llama.cpp', source: source() } }, {}), await loadBoard('qemu')).catch((e: Error) => e.message)).toMatch(/engine\.source is set but the engine is llama\.cpp/);
    expect(await failure({})).toMatch(/give engine\.source \(its source tarball, compiled during the build\) or engine\.dllama_dir/);
  });
});
