import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { filesOf, packBundle } from '../../../../src/host/ota/bundle-write.js';
import { readBundle } from '../../../../src/shared/ota/bundle-read.js';
import { BundleError, compareVersions, keyId, signManifest } from '../../../../src/shared/ota/manifest.js';

const work = mkdtempSync(join(tmpdir(), 'pi-image-bundle-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const owner = generateKeyPairSync('ed25519');
const stranger = generateKeyPairSync('ed25519');

function runtimeDir(): string {
  const dir = mkdtempSync(join(work, 'rt-'));
  mkdirSync(join(dir, 'bin'));
  mkdirSync(join(dir, 'lib'));
  writeFileSync(join(dir, 'bin/llama-server'), randomBytes(300_000));
  writeFileSync(join(dir, 'bin/ggml-rpc-server'), randomBytes(70_000));
  writeFileSync(join(dir, 'lib/libggml.so'), randomBytes(123_457));
  chmodSync(join(dir, 'bin/llama-server'), 0o755);
  chmodSync(join(dir, 'bin/ggml-rpc-server'), 0o755);
  return dir;
}

async function pack(key: KeyObject = owner.privateKey, arch = 'arm64'): Promise<{ bundle: string; dir: string }> {
  const dir = runtimeDir();
  const bundle = join(work, `${Math.random().toString(36).slice(2)}.bundle`);
  await packBundle({ out: bundle, kind: 'runtime', engine: 'llama.cpp', version: 'b6000', arch, files: await filesOf(dir), entry: { root: 'bin/llama-server', worker: 'bin/ggml-rpc-server' }, privateKey: key });
  return { bundle, dir };
}

/** A tar of these entries, in order (for bundles pi-image would never write). */
async function rawTar(entries: { name: string; data: Buffer }[]): Promise<Buffer> {
  const p = tar.pack();
  for (const e of entries) p.entry({ name: e.name, size: e.data.length, mode: 0o644 }, e.data);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function entriesOf(bundle: string): Promise<{ name: string; data: Buffer }[]> {
  const x = tar.extract();
  createReadStream(bundle).pipe(x);
  const out: { name: string; data: Buffer }[] = [];
  for await (const e of x) {
    const chunks: Buffer[] = [];
    for await (const c of e) chunks.push(c as Buffer);
    out.push({ name: e.header.name, data: Buffer.concat(chunks) });
  }
  return out;
}

const read = (data: Buffer | string, opts: Partial<Parameters<typeof readBundle>[1]> = {}) =>
  readBundle(typeof data === 'string' ? createReadStream(data) : Readable.from([data]), { trusted: [owner.publicKey], ...opts });

async function rejection(p: Promise<unknown>): Promise<BundleError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(BundleError);
  return e as BundleError;
}

describe('OTA bundles: signed manifest, streamed verification', () => {
  it('packs a runtime folder and unpacks it into staging, every file checked', async () => {
    const { bundle, dir } = await pack();
    const staging = mkdtempSync(join(work, 'staging-'));
    const manifest = await read(bundle, {
      expect: { arch: 'arm64', engine: 'llama.cpp', kind: 'runtime' },
      sink: async (f) => {
        mkdirSync(join(staging, f.path, '..'), { recursive: true });
        return createWriteStream(join(staging, f.path), { mode: f.mode });
      },
    });
    expect(manifest).toMatchObject({ kind: 'runtime', engine: 'llama.cpp', version: 'b6000', arch: 'arm64', key: keyId(owner.publicKey), entry: { root: 'bin/llama-server', worker: 'bin/ggml-rpc-server' } });
    expect(manifest.files.map((f) => [f.path, f.mode])).toEqual([['bin/ggml-rpc-server', 0o755], ['bin/llama-server', 0o755], ['lib/libggml.so', 0o644]]);
    for (const f of manifest.files) expect(readFileSync(join(staging, f.path)).equals(readFileSync(join(dir, f.path)))).toBe(true);
    expect(statSync(join(staging, 'bin/llama-server')).mode & 0o777).toBe(0o755);
  });

  it('the same inputs give the same bundle, byte for byte', async () => {
    const dir = runtimeDir();
    const make = async (name: string) => {
      await packBundle({ out: join(work, name), kind: 'runtime', engine: 'llama.cpp', version: 'b6000', arch: 'arm64', files: await filesOf(dir), entry: { root: 'bin/llama-server', worker: 'bin/ggml-rpc-server' }, privateKey: owner.privateKey });
      return readFileSync(join(work, name));
    };
    expect((await make('a.bundle')).equals(await make('b.bundle'))).toBe(true);
  });

  it('refuses a bundle signed by a key it does not trust, before looking at the payload', async () => {
    const { bundle } = await pack(stranger.privateKey);
    let sinks = 0;
    const e = await rejection(read(bundle, { sink: async () => ((sinks++, createWriteStream('/dev/null'))) }));
    expect(e.code).toBe('unknown-key');
    expect(e.message).toMatch(new RegExp(`signed by key ${keyId(stranger.publicKey)}, which is not trusted here \\(trusted: ${keyId(owner.publicKey)}\\)`));
    expect(sinks).toBe(0);
    // Trusted once its key is listed (keys rotate: more than one may be trusted).
    await expect(read(bundle, { trusted: [owner.publicKey, stranger.publicKey] })).resolves.toMatchObject({ version: 'b6000' });
  });

  it('refuses an unsigned bundle and a wrong signature', async () => {
    const [manifest, sig, ...payload] = await entriesOf((await pack()).bundle);
    expect((await rejection(read(await rawTar([manifest!, ...payload])))).code).toBe('unsigned');
    const forged = signManifest(manifest!.data, stranger.privateKey);
    const e = await rejection(read(await rawTar([manifest!, { name: sig!.name, data: forged }, ...payload])));
    expect(e.code).toBe('bad-signature');
    expect(e.message).toMatch(/signature does not match its manifest/);
  });

  it('refuses a manifest changed after signing (a size, a hash)', async () => {
    const [manifest, sig, ...payload] = await entriesOf((await pack()).bundle);
    const changed = Buffer.from(manifest!.data.toString().replace('"version": "b6000"', '"version": "b9999"'));
    expect((await rejection(read(await rawTar([{ name: manifest!.name, data: changed }, sig!, ...payload])))).code).toBe('bad-signature');
  });

  it('refuses a payload byte changed, naming the file', async () => {
    const [manifest, sig, ...payload] = await entriesOf((await pack()).bundle);
    const victim = payload[1]!;
    const at = victim.data.length - 3;
    victim.data.writeUInt8(victim.data.readUInt8(at) ^ 0x01, at);
    const e = await rejection(read(await rawTar([manifest!, sig!, ...payload])));
    expect(e.code).toBe('tampered');
    expect(e.message).toBe('bin/llama-server does not match its SHA-256 in the signed manifest: the bundle was altered or damaged');
  });

  it('refuses a truncated bundle, a missing file and an extra one', async () => {
    const { bundle } = await pack();
    const whole = readFileSync(bundle);
    for (const cut of [100, 1500, Math.floor(whole.length / 2), whole.length - 2048]) {
      const e = await rejection(read(whole.subarray(0, cut)));
      expect(['truncated', 'unsigned'], `cut at ${cut}: ${e.message}`).toContain(e.code);
    }
    expect((await rejection(read(whole.subarray(0, Math.floor(whole.length / 2))))).code).toBe('truncated');
    const [manifest, sig, ...payload] = await entriesOf(bundle);
    expect((await rejection(read(await rawTar([manifest!, sig!, ...payload.slice(0, 2)])))).message).toMatch(/ends before lib\/libggml.so: 1 of 3 files missing/);
    expect((await rejection(read(await rawTar([manifest!, sig!, ...payload, { name: 'payload/evil', data: Buffer.from('x') }])))).code).toBe('tampered');
    // A file swapped for another of the bundle (reordered) is refused too.
    expect((await rejection(read(await rawTar([manifest!, sig!, payload[1]!, payload[0]!, payload[2]!])))).code).toBe('tampered');
  });

  it('refuses the wrong architecture, engine or kind before any payload is written', async () => {
    const { bundle } = await pack(owner.privateKey, 'amd64');
    let sinks = 0;
    const sink = async () => ((sinks++, createWriteStream('/dev/null')));
    expect((await rejection(read(bundle, { expect: { arch: 'arm64' }, sink }))).message).toBe('the bundle is built for amd64, but the nodes are arm64');
    expect((await rejection(read(bundle, { expect: { engine: 'dllama' }, sink }))).code).toBe('wrong-engine');
    expect((await rejection(read(bundle, { expect: { kind: 'model' }, sink }))).code).toBe('wrong-kind');
    expect(sinks).toBe(0);
  });

  it('refuses a signed manifest with a path that climbs out', async () => {
    const manifest = Buffer.from(JSON.stringify({ format: 'pi-image-bundle/1', kind: 'model', engine: 'llama.cpp', version: '1', arch: 'all', key: keyId(owner.publicKey), files: [{ path: '../../etc/passwd', size: 1, sha256: '0'.repeat(64), mode: 0o644 }] }));
    const e = await rejection(read(await rawTar([{ name: 'manifest.json', data: manifest }, { name: 'manifest.sig', data: signManifest(manifest, owner.privateKey) }])));
    expect(e.code).toBe('unsafe-path');
  });

  it("carries a runtime's library folder, and refuses one that climbs out", async () => {
    const dir = runtimeDir();
    const bundle = join(work, 'libs.bundle');
    const entry = { root: 'bin/llama-server', worker: 'bin/ggml-rpc-server' };
    await packBundle({ out: bundle, kind: 'runtime', engine: 'llama.cpp', version: 'b6000', arch: 'arm64', files: await filesOf(dir), entry, libraryPath: 'lib', privateKey: owner.privateKey });
    expect((await readBundle(createReadStream(bundle), { trusted: [owner.publicKey] })).libraryPath).toBe('lib');
    for (const libraryPath of ['../lib', '/usr/lib', 'lib/../..', '']) {
      await expect(packBundle({ out: join(work, 'bad-libs.bundle'), kind: 'runtime', engine: 'llama.cpp', version: 'b6000', arch: 'arm64', files: await filesOf(dir), entry, libraryPath, privateKey: owner.privateKey })).rejects.toThrow(/unsafe library folder/);
    }
    const manifest = Buffer.from(JSON.stringify({ format: 'pi-image-bundle/1', kind: 'runtime', engine: 'llama.cpp', version: '1', arch: 'arm64', key: keyId(owner.publicKey), entry: { root: 'a', worker: 'a' }, libraryPath: '..', files: [{ path: 'a', size: 1, sha256: '0'.repeat(64), mode: 0o755 }] }));
    expect((await rejection(read(await rawTar([{ name: 'manifest.json', data: manifest }, { name: 'manifest.sig', data: signManifest(manifest, owner.privateKey) }])))).code).toBe('unsafe-path');
  });

  it('refuses what is not a bundle at all', async () => {
    expect((await rejection(read(Buffer.from('hello, not a tar file at all'.repeat(40))))).code).toMatch(/malformed|truncated/);
    expect((await rejection(read(await rawTar([{ name: 'README', data: Buffer.from('x') }])))).message).toMatch(/does not start with manifest.json/);
  });

  it('compares versions part by part', () => {
    expect(compareVersions('b6000', 'b5123')).toBe(1);
    expect(compareVersions('0.16.3', '0.16.4')).toBe(-1);
    expect(compareVersions('8064+dfsg-1', '8064+dfsg-1')).toBe(0);
    expect(compareVersions('1.10', '1.9')).toBe(1);
    // A Debian package version without its epoch, and the same build labelled as another.
    expect(compareVersions('0.7.0+dfsg-2+sid', '0.7.0+dfsg-2')).toBe(1);
    expect(compareVersions('0.7.0+dfsg-3', '0.7.0+dfsg-2+sid')).toBe(1);
  });
});
