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

async function makeBundle(version: string): Promise<void> {
  const dir = join(work, `src-${version}`);
  mkdirSync(join(dir, 'bin'), { recursive: true });
  const files = { 'bin/llama-server': `server ${version} `.repeat(20_000), 'bin/ggml-rpc-server': `rpc ${version} `.repeat(5_000), 'lib/libggml.so': `lib ${version}`.repeat(1000) };
  mkdirSync(join(dir, 'lib'), { recursive: true });
  for (const [p, text] of Object.entries(files)) writeFileSync(join(dir, p), text);
  chmodSync(join(dir, 'bin/llama-server'), 0o755);
  chmodSync(join(dir, 'bin/ggml-rpc-server'), 0o755);
  contents[version] = Object.fromEntries(Object.entries(files).map(([p, t]) => [p, createHash('sha256').update(t).digest('hex')]));
  bundles[version] = join(work, `${version}.bundle`);
  await packBundle({ out: bundles[version] as string, kind: 'runtime', engine: 'llama.cpp', version, arch: 'arm64', files: await filesOf(dir), entry: { root: 'bin/llama-server', worker: 'bin/ggml-rpc-server' }, privateKey: key.privateKey });
}

const trusted = [key.publicKey];
const stage = (store: VersionStore, version: string) => store.stage(createReadStream(bundles[version] as string), { trusted, expect: { kind: 'runtime', arch: 'arm64', engine: 'llama.cpp' } });

/** The version `current` names, checked complete: every file there with its bundle's content. */
async function completeCurrent(store: VersionStore): Promise<string | undefined> {
  const v = await store.current();
  if (!v) return undefined;
  for (const [p, sha] of Object.entries(contents[v] ?? {})) {
    expect(createHash('sha256').update(readFileSync(join(store.root, 'current', p))).digest('hex'), `${v}/${p}`).toBe(sha);
  }
  return v;
}

beforeAll(async () => {
  for (const v of ['b1', 'b2', 'b3', 'b4']) await makeBundle(v);
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

  // The update b1 → b2 in a real process, SIGKILLed at each step; recover() then gives a store
  // whose current is complete: b1 if killed before the switch, b2 after; retrying finishes it.
  const STEPS = ['unpacked', 'synced', 'staged', 'previous-link-made', 'previous-linked', 'current-link-made', 'switched'];
  it.each(STEPS)('a kill at %s leaves a store that recovers to a whole version', async (step) => {
    const root = mkdtempSync(join(work, `kill-${step}-`));
    const store = new VersionStore(root);
    await stage(store, 'b1');
    await store.switchTo('b1');
    const script = join(work, 'update.mjs');
    writeFileSync(
      script,
      `import { createReadStream, readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { VersionStore } from ${JSON.stringify(join(REPO, 'dist/node/ota/version-store.js'))};
const [root, bundle, pem, killAt] = process.argv.slice(2);
const store = new VersionStore(root, (name) => { if (name === killAt) process.kill(process.pid, 'SIGKILL'); });
const m = await store.stage(createReadStream(bundle), { trusted: [createPublicKey(readFileSync(pem, 'utf8'))], expect: { kind: 'runtime' } });
await store.switchTo(m.version);
`,
    );
    const run = spawnSync(process.execPath, [script, root, bundles.b2 as string, PEM, step], { encoding: 'utf8' });
    expect(run.signal, `${run.stderr} (the child runs dist/: npm run build first; scripts/test does)`).toBe('SIGKILL');
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
