import { spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { chmodSync, createReadStream, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { filesOf, packBundle } from '../../../../src/host/ota/bundle-write.js';
import { VersionStore } from '../../../../src/node/ota/version-store.js';
import { REPO } from '../../../helpers/cli.js';

const work = mkdtempSync(join(tmpdir(), 'pi-image-store-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const key = generateKeyPairSync('ed25519');
const PEM = join(work, 'ota.pub');
const bundles: Record<string, string> = {};
const contents: Record<string, Record<string, string>> = {};

/** A bundle of `version`; with `rebuild`, the same version with other files (contents keyed `version+rebuild`). */
async function makeBundle(version: string, rebuild = ''): Promise<void> {
  const dir = join(work, `src-${version}${rebuild}`);
  mkdirSync(join(dir, 'bin'), { recursive: true });
  const files = { 'bin/llama-server': `server ${version}${rebuild} `.repeat(20_000), 'bin/ggml-rpc-server': `rpc ${version} `.repeat(5_000), 'lib/libggml.so': `lib ${version}`.repeat(1000) };
  mkdirSync(join(dir, 'lib'), { recursive: true });
  for (const [p, text] of Object.entries(files)) writeFileSync(join(dir, p), text);
  chmodSync(join(dir, 'bin/llama-server'), 0o755);
  chmodSync(join(dir, 'bin/ggml-rpc-server'), 0o755);
  contents[version + rebuild] = Object.fromEntries(Object.entries(files).map(([p, t]) => [p, createHash('sha256').update(t).digest('hex')]));
  bundles[version + rebuild] = join(work, `${version}${rebuild}.bundle`);
  await packBundle({ out: bundles[version + rebuild] as string, kind: 'runtime', engine: 'llama.cpp', version, arch: 'arm64', files: await filesOf(dir), entry: { root: 'bin/llama-server', worker: 'bin/ggml-rpc-server' }, privateKey: key.privateKey });
}

const trusted = [key.publicKey];
const stage = (store: VersionStore, version: string, replace = false) => store.stage(createReadStream(bundles[version] as string), { trusted, expect: { kind: 'runtime', arch: 'arm64', engine: 'llama.cpp' }, replace });
/** Whether the store's folder of `version` holds the files of bundle `bundle` (read back). */
const holdsBundle = async (store: VersionStore, version: string, bundle: string) => store.holds(version, Object.entries(contents[bundle] ?? {}).map(([path, sha256]) => ({ path, sha256, size: readFileSync(join(store.root, 'versions', version, path)).length })));

/** The version `current` names, checked complete: every file there with its bundle's content. */
async function completeCurrent(store: VersionStore): Promise<string | undefined> {
  const v = await store.current();
  if (!v) return undefined;
  for (const [p, sha] of Object.entries(contents[v] ?? {})) {
    expect(createHash('sha256').update(readFileSync(join(store.root, 'current', p))).digest('hex'), `${v}/${p}`).toBe(sha);
  }
  return v;
}

/**
 * In a real process, SIGKILLed as the store reaches `step`: stages bundle `name` into the store
 * at `root`, then switches to it (`update`), or stages it over an installed folder (`replace`).
 */
function stageKilledAt(root: string, name: string, step: string, mode: 'update' | 'replace'): void {
  const script = join(work, 'stage-killed.mjs');
  writeFileSync(
    script,
    `import { createReadStream, readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { VersionStore } from ${JSON.stringify(join(REPO, 'dist/node/ota/version-store.js'))};
const [root, bundle, pem, killAt, mode] = process.argv.slice(2);
const store = new VersionStore(root, (name) => { if (name === killAt) process.kill(process.pid, 'SIGKILL'); });
const m = await store.stage(createReadStream(bundle), { trusted: [createPublicKey(readFileSync(pem, 'utf8'))], expect: { kind: 'runtime' }, replace: mode === 'replace' });
if (mode === 'update') await store.switchTo(m.version);
`,
  );
  const run = spawnSync(process.execPath, [script, root, bundles[name] as string, PEM, step, mode], { encoding: 'utf8' });
  expect(run.signal, `${run.stderr} (the child runs dist/: npm run build first; scripts/test does)`).toBe('SIGKILL');
}

beforeAll(async () => {
  for (const v of ['b1', 'b2', 'b3', 'b4']) await makeBundle(v);
  await makeBundle('b2', '+rebuilt');
  writeFileSync(PEM, key.publicKey.export({ type: 'spki', format: 'pem' }));
});

describe('versioned runtime folders with a current link', () => {
  it('stages verified versions, switches current atomically, keeps the previous one, prunes the rest', async () => {
    const store = new VersionStore(mkdtempSync(join(work, 'store-')));
    await stage(store, 'b1');
    await store.switchTo('b1');
    expect([await completeCurrent(store), await store.previous()]).toEqual(['b1', undefined]);
    for (const v of ['b2', 'b3', 'b4']) {
      await stage(store, v);
      await store.switchTo(v);
    }
    expect([await completeCurrent(store), await store.previous()]).toEqual(['b4', 'b3']);
    expect(await store.prune(3)).toEqual(['b1']);
    expect(await store.installed()).toEqual(['b2', 'b3', 'b4']);
    expect(await store.rollback()).toBe('b3');
    expect([await completeCurrent(store), await store.previous()]).toEqual(['b3', 'b4']);
    // A bundle that fails verification leaves nothing: no version, no staging.
    const damaged = join(work, 'damaged.bundle');
    const bytes = readFileSync(bundles.b1 as string);
    const i = bytes.length - 3000;
    bytes.writeUInt8(bytes.readUInt8(i) ^ 0xff, i);
    writeFileSync(damaged, bytes);
    const fresh = new VersionStore(mkdtempSync(join(work, 'store-')));
    await expect(fresh.stage(createReadStream(damaged), { trusted, expect: { kind: 'runtime' } })).rejects.toThrow(/does not match its SHA-256/);
    expect(await fresh.installed()).toEqual([]);
    expect(readdirSync(join(fresh.root, 'staging'))).toEqual([]);
  });

  it('replaces a version that is installed but not current when a bundle of it brings other files; refuses to while it is current', async () => {
    const store = new VersionStore(mkdtempSync(join(work, 'store-')));
    await stage(store, 'b1');
    await stage(store, 'b2');
    await store.switchTo('b1');
    expect(await holdsBundle(store, 'b2', 'b2')).toBe(true);
    expect(await holdsBundle(store, 'b2', 'b2+rebuilt')).toBe(false);
    await expect(stage(store, 'b2+rebuilt')).rejects.toThrow(/version b2 is installed already/);
    await stage(store, 'b2+rebuilt', true);
    expect(await holdsBundle(store, 'b2', 'b2+rebuilt')).toBe(true);
    expect(readdirSync(join(store.root, 'replaced'))).toEqual([]);
    await store.switchTo('b2');
    await expect(stage(store, 'b2', true)).rejects.toThrow(/version b2 runs on this node with other files/);
    expect(await holdsBundle(store, 'b2', 'b2+rebuilt')).toBe(true);
  });

  it.each(['replaced-moved', 'staged'])('a kill at %s while a version is replaced leaves either its old files or its new ones, whole', async (step) => {
    const root = mkdtempSync(join(work, `replace-${step}-`));
    const store = new VersionStore(root);
    await stage(store, 'b1');
    await stage(store, 'b2');
    await store.switchTo('b1');
    stageKilledAt(root, 'b2+rebuilt', step, 'replace');
    const after = new VersionStore(root);
    await after.recover();
    expect(await after.installed()).toEqual(['b1', 'b2']);
    expect(await holdsBundle(after, 'b2', step === 'staged' ? 'b2+rebuilt' : 'b2')).toBe(true);
    expect(readdirSync(join(root, 'replaced'))).toEqual([]);
    expect(await completeCurrent(after)).toBe('b1');
  });

  // The update b1 → b2 in a real process, SIGKILLed at each step; recover() then gives a store
  // whose current is complete: b1 if killed before the switch, b2 after; retrying finishes it.
  const STEPS = ['unpacked', 'synced', 'staged', 'previous-link-made', 'previous-linked', 'current-link-made', 'switched'];
  it.each(STEPS)('a kill at %s leaves a store that recovers to a whole version', async (step) => {
    const root = mkdtempSync(join(work, `kill-${step}-`));
    const store = new VersionStore(root);
    await stage(store, 'b1');
    await store.switchTo('b1');
    stageKilledAt(root, 'b2', step, 'update');
    const after = new VersionStore(root);
    await after.recover();
    const switched = STEPS.indexOf(step) >= STEPS.indexOf('switched');
    expect(await completeCurrent(after)).toBe(switched ? 'b2' : 'b1');
    expect(readdirSync(join(root, 'staging'))).toEqual([]);
    expect(readdirSync(root).filter((n) => n.includes('.new-'))).toEqual([]);
    // Finishing the update from where it stopped.
    if (!(await after.path('b2'))) await stage(after, 'b2');
    await after.switchTo('b2');
    expect([await completeCurrent(after), await after.previous()]).toEqual(['b2', 'b1']);
  });
});
