import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, createReadStream, createWriteStream, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { filesOf, packBundle } from '../../../../src/host/ota/bundle-write.js';
import { VersionStore } from '../../../../src/node/ota/version-store.js';
import { nextPhase, resumeStep, type UpdatePhase } from '../../../../src/node/ota/update-steps.js';
import { REPO } from '../../../helpers/cli.js';

/**
 * A cluster-wide update as real processes with real files: three nodes' version stores, the
 * workers' agents answering over loopback HTTP, the root's coordinator; SIGKILLed at each
 * phase (a power cut of every node at once), then started again to resume from its record.
 */
const work = mkdtempSync(join(tmpdir(), 'pi-image-ota-cluster-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const key = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('ed25519');
const bundles: Record<string, string> = {};
const SCRIPT = join(REPO, 'test/helpers/ota-cluster-process.mjs');
const DIST = join(REPO, 'dist');

async function makeBundle(name: string, version: string, opts: { arch?: string; signer?: typeof key; broken?: boolean } = {}): Promise<string> {
  const dir = join(work, `src-${name}`);
  mkdirSync(join(dir, 'bin'), { recursive: true });
  writeFileSync(join(dir, 'bin/llama-server'), `${opts.broken ? 'broken' : 'server'} ${version} `.repeat(300_000));
  writeFileSync(join(dir, 'bin/ggml-rpc-server'), `rpc ${version}`);
  chmodSync(join(dir, 'bin/llama-server'), 0o755);
  chmodSync(join(dir, 'bin/ggml-rpc-server'), 0o755);
  const out = join(work, `${name}.bundle`);
  await packBundle({ out, kind: 'runtime', engine: 'llama.cpp', version, arch: opts.arch ?? 'arm64', files: await filesOf(dir), entry: { root: 'bin/llama-server', worker: 'bin/ggml-rpc-server' }, privateKey: (opts.signer ?? key).privateKey });
  bundles[name] = out;
  return out;
}

/** A model bundle: one weights file (the stand-in engine only records its version). */
async function makeModelBundle(name: string, version: string, engine: 'llama.cpp' | 'dllama' = 'llama.cpp'): Promise<string> {
  const dir = join(work, `src-${name}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, engine === 'dllama' ? 'model.m' : 'model.gguf'), `weights ${version} `.repeat(200_000));
  const out = join(work, `${name}.bundle`);
  await packBundle({ out, kind: 'model', engine, version, arch: 'all', files: await filesOf(dir), privateKey: key.privateKey });
  bundles[name] = out;
  return out;
}

/** The same bundle with its signature entry left out. */
async function withoutSignature(bundle: string, out: string): Promise<string> {
  const extract = tar.extract();
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(out));
  createReadStream(bundle).pipe(extract);
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    if (entry.header.name !== 'manifest.sig') pack.entry(entry.header, body);
  }
  pack.finalize();
  await written;
  return out;
}

interface Run {
  outcome: string;
  current: Record<string, string | null>;
  models: Record<string, string | null>;
  engines: string[];
  last: { phase: UpdatePhase; reason?: string; nodes: Record<string, { fetched?: number }> } | null;
}

/** A fresh cluster whose three nodes run 1.0 (and with `model`, serve model m1), as a freshly flashed one does. */
async function cluster(name: string, opts: { model?: boolean } = {}): Promise<string> {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'ota.pub'), key.publicKey.export({ type: 'spki', format: 'pem' }));
  for (const n of ['n1', 'n2', 'n3']) {
    const store = new VersionStore(join(dir, n, 'runtime'));
    await store.stage(createReadStream(bundles.b1 as string), { trusted: [key.publicKey], expect: { kind: 'runtime' } });
    await store.switchTo('1.0');
    if (opts.model) {
      const models = new VersionStore(join(dir, n, 'model'));
      await models.stage(createReadStream(bundles.m1 as string), { trusted: [key.publicKey], expect: { kind: 'model' } });
      await models.switchTo('m1');
    }
    writeFileSync(join(dir, n, 'engine'), `running 1.0${opts.model ? ' model m1' : ''}`);
  }
  return dir;
}

function run(dir: string, mode: 'push' | 'resume' | 'align', bundle = '', killAt = '', allowDowngrade = false, env: Record<string, string> = {}): Run & { signal: string | null; stderr: string } {
  const r = spawnSync(process.execPath, [SCRIPT, DIST, dir, mode, bundle, killAt, allowDowngrade ? '1' : ''], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  if (r.signal) return { signal: r.signal, stderr: r.stderr, outcome: 'killed', current: {}, models: {}, engines: [], last: null };
  if (r.status !== 0) throw new Error(`the cluster process failed (${r.status}): ${r.stderr} (it runs dist/: npm run build first; scripts/test does)`);
  return { ...(JSON.parse(r.stdout) as Run), signal: null, stderr: r.stderr };
}

beforeAll(async () => {
  await makeBundle('b1', '1.0');
  await makeBundle('b2', '2.0');
  await makeBundle('b4', '4.0');
  await makeBundle('bad', '3.0-bad');
  await makeBundle('amd64', '2.0', { arch: 'amd64' });
  await makeBundle('unknown-key', '2.0', { signer: other });
  await makeBundle('old', '0.9');
  await makeBundle('b3-broken', '3.0', { broken: true });
  await makeBundle('b3-fixed', '3.0');
  await makeModelBundle('m1', 'm1');
  await makeModelBundle('m2', 'm2');
  await makeModelBundle('m3-bad', 'm3-bad');
  await makeModelBundle('m2-dllama', 'm2', 'dllama');
  const tampered = join(work, 'tampered.bundle');
  const bytes = readFileSync(bundles.b2 as string);
  bytes.writeUInt8((bytes.readUInt8(bytes.length - 20_000) ^ 0xff) & 0xff, bytes.length - 20_000);
  writeFileSync(tampered, bytes);
  bundles.tampered = tampered;
  writeFileSync(join(work, 'truncated.bundle'), readFileSync(bundles.b2 as string).subarray(0, 300_000));
  bundles.truncated = join(work, 'truncated.bundle');
  bundles.unsigned = await withoutSignature(bundles.b2 as string, join(work, 'unsigned.bundle'));
});

describe('the phases of a cluster update (pure)', () => {
  it('resumes the safe way from every phase', () => {
    expect(resumeStep('staging')).toBe('refuse');
    for (const p of ['switching', 'checking', 'rolling-back'] as const) expect(resumeStep(p)).toBe('roll-back');
    expect(resumeStep('committing')).toBe('commit');
    for (const p of ['committed', 'rolled-back', 'refused'] as const) expect(resumeStep(p)).toBe('none');
    expect(nextPhase('staging', { ok: false, reason: 'x' })).toBe('refused');
    expect(nextPhase('checking', { ok: false, reason: 'x' })).toBe('rolling-back');
    expect(nextPhase('checking', { ok: true })).toBe('committing');
    expect(() => nextPhase('committed', { ok: true })).toThrow(/has ended/);
  });
});

describe('a cluster update with real files and processes', () => {
  it('a good bundle: staged on every node (the workers fetch it from the root), switched everywhere, committed', async () => {
    const dir = await cluster('good');
    const r = run(dir, 'push', bundles.b2);
    expect(r.outcome).toBe('committed');
    expect(r.current).toEqual({ n1: '2.0', n2: '2.0', n3: '2.0' });
    expect(r.engines).toEqual(['running 2.0', 'running 2.0', 'running 2.0']);
    const size = readFileSync(bundles.b2 as string).length;
    expect([r.last?.nodes.n2?.fetched, r.last?.nodes.n3?.fetched]).toEqual([size, size]);
    // The root keeps the committed bundle (for nodes that were away) and nothing else; the previous version stays for a rollback.
    expect(readdirSync(join(dir, 'n1/ota/bundles')).sort()).toEqual([expect.stringMatching(/^[0-9a-f]{64}\.bundle$/), expect.stringMatching(/^[0-9a-f]{64}\.chunks\.json$/)].sort());
    expect(await new VersionStore(join(dir, 'n2/runtime')).previous()).toBe('1.0');
  });

  it('a node that was away during an update is brought onto the cluster\'s version before the root starts with it', async () => {
    const dir = await cluster('away');
    expect(run(dir, 'push', bundles.b2).outcome).toBe('committed');
    // n2 came back on the version it had (installed); n3 from a card that never had 2.0.
    await new VersionStore(join(dir, 'n2/runtime')).switchTo('1.0');
    rmSync(join(dir, 'n3/runtime'), { recursive: true });
    const fresh = new VersionStore(join(dir, 'n3/runtime'));
    await fresh.stage(createReadStream(bundles.b1 as string), { trusted: [key.publicKey], expect: { kind: 'runtime' } });
    await fresh.switchTo('1.0');
    const r = run(dir, 'align');
    expect(JSON.parse(r.outcome)).toEqual({ changed: expect.arrayContaining(['n2', 'n3']), problems: [] });
    expect(r.current).toEqual({ n1: '2.0', n2: '2.0', n3: '2.0' });
    expect(r.engines.slice(1)).toEqual(['running 2.0', 'running 2.0']);
    // Aligned already: nothing to do.
    expect(JSON.parse(run(dir, 'align').outcome)).toEqual({ changed: [], problems: [] });
  });

  it('a bundle whose engine fails its health check: every node back on the previous version, running', async () => {
    const dir = await cluster('bad');
    const r = run(dir, 'push', bundles.bad);
    expect(r.outcome).toBe('rolled-back');
    expect(r.last?.reason).toMatch(/health check: the output hashes to something else/);
    expect(r.current).toEqual({ n1: '1.0', n2: '1.0', n3: '1.0' });
    expect(r.engines).toEqual(['running 1.0', 'running 1.0', 'running 1.0']);
  });

  it('a build rolled back and pushed again under the same version with other files is staged anew on every node, not taken from the old folder', async () => {
    const dir = await cluster('same-version');
    const broken = run(dir, 'push', bundles['b3-broken']);
    expect(broken.outcome).toBe('rolled-back');
    expect(broken.engines).toEqual(['running 1.0', 'running 1.0', 'running 1.0']);
    for (const n of ['n1', 'n2', 'n3']) expect(await new VersionStore(join(dir, n, 'runtime')).installed()).toEqual(['1.0', '3.0']);
    const fixed = run(dir, 'push', bundles['b3-fixed']);
    expect(fixed.outcome).toBe('committed');
    expect(fixed.current).toEqual({ n1: '3.0', n2: '3.0', n3: '3.0' });
    expect(fixed.engines).toEqual(['running 3.0', 'running 3.0', 'running 3.0']);
    const size = readFileSync(bundles['b3-fixed'] as string).length;
    expect([fixed.last?.nodes.n2?.fetched, fixed.last?.nodes.n3?.fetched]).toEqual([size, size]);
    expect(fixed.stderr).toMatch(/holds other files than the bundle's: staged again/);
    for (const n of ['n1', 'n2', 'n3']) expect(readdirSync(join(dir, n, 'runtime')).filter((name) => name === 'replaced' || name === 'staging').flatMap((d) => readdirSync(join(dir, n, 'runtime', d)))).toEqual([]);
    // The same build pushed once more is not fetched again: its folder holds these very files.
    const again = run(dir, 'push', bundles['b3-fixed'], '', true);
    expect(again.outcome).toBe('committed');
    expect([again.last?.nodes.n2?.fetched, again.last?.nodes.n3?.fetched]).toEqual([0, 0]);
  });

  it.each([
    ['tampered', /does not match its SHA-256|tampered/],
    ['truncated', /truncated|ends/],
    ['unsigned', /is not signed/],
    ['unknown-key', /not trusted here/],
    ['amd64', /built for amd64, but the nodes are arm64/],
    ['old', /^refused: the bundle's llama\.cpp 0\.9 is not newer than the running 1\.0.*--allow-downgrade/],
  ])('a %s bundle is refused before any node changes', async (name, message) => {
    const dir = await cluster(`refused-${name}`);
    const r = run(dir, 'push', bundles[name]);
    expect(r.outcome).toMatch(/^refused: /);
    expect(r.outcome).toMatch(message);
    expect(r.outcome).toMatch(/nothing was changed on any node/);
    expect(r.current).toEqual({ n1: '1.0', n2: '1.0', n3: '1.0' });
    expect(r.engines).toEqual(['running 1.0', 'running 1.0', 'running 1.0']);
    for (const n of ['n1', 'n2', 'n3']) expect(await new VersionStore(join(dir, n, 'runtime')).installed()).toEqual(['1.0']);
  });

  it('a node without the disk space for the bundle refuses it, and no node changes (a real 8 MiB file system)', async () => {
    const dir = await cluster('nospace');
    const download = join(dir, 'n3/download');
    mkdirSync(download, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', download]);
    try {
      const r = run(dir, 'push', bundles.b2);
      expect(r.outcome).toBe('refused');
      expect(r.last?.reason).toMatch(/n3: not enough disk space: \d+ MiB needed in .*n3\/download, [78] MiB free/);
      expect(r.current).toEqual({ n1: '1.0', n2: '1.0', n3: '1.0' });
      expect(r.engines).toEqual(['running 1.0', 'running 1.0', 'running 1.0']);
    } finally {
      execFileSync('umount', [download]);
    }
  });

  it('keeps ota.keep_versions versions after each commit (never the current or the previous one)', async () => {
    const dir = await cluster('keep');
    const keep = { OTA_KEEP: '2' };
    expect(run(dir, 'push', bundles.b2, '', false, keep).outcome).toBe('committed');
    expect(run(dir, 'push', bundles.b4 as string, '', false, keep).outcome).toBe('committed');
    for (const n of ['n1', 'n2', 'n3']) expect(await new VersionStore(join(dir, n, 'runtime')).installed()).toEqual(['2.0', '4.0']);
  });

  it('an older bundle is taken with --allow-downgrade', async () => {
    const dir = await cluster('downgrade');
    expect(run(dir, 'push', bundles.old, '', true).current).toEqual({ n1: '0.9', n2: '0.9', n3: '0.9' });
  });

  // Killed as each phase begins (its record written), then started again: the cluster ends
  // on one version — the old one unless the new one was being committed.
  it.each([
    ['staging', 'refused', '1.0'],
    ['switching', 'rolled-back', '1.0'],
    ['checking', 'rolled-back', '1.0'],
    ['committing', 'committed', '2.0'],
    ['rolling-back', 'rolled-back', '1.0'],
    ['committed', 'committed', '2.0'],
  ] as const)('a power cut as %s begins: after restart the update ends %s, every node on %s', async (phase, outcome, version) => {
    const dir = await cluster(`kill-${phase}`);
    // rolling-back is reached only by a failing bundle.
    const killed = run(dir, 'push', phase === 'rolling-back' ? bundles.bad : bundles.b2, phase);
    expect(killed.signal, killed.stderr).toBe('SIGKILL');
    const resumed = run(dir, 'resume');
    expect(resumed.outcome).toBe(outcome);
    expect(resumed.current).toEqual({ n1: version, n2: version, n3: version });
    expect(resumed.engines).toEqual([`running ${version}`, `running ${version}`, `running ${version}`]);
  });

  describe('model bundles: the same steps for the model the engine loads', () => {
    it('a new model: staged on every node, switched at once (the runtime untouched), committed', async () => {
      const dir = await cluster('model-good', { model: true });
      const r = run(dir, 'push', bundles.m2);
      expect(r.outcome).toBe('committed');
      expect(r.models).toEqual({ n1: 'm2', n2: 'm2', n3: 'm2' });
      expect(r.current).toEqual({ n1: '1.0', n2: '1.0', n3: '1.0' });
      expect(r.engines).toEqual(['running 1.0 model m2', 'running 1.0 model m2', 'running 1.0 model m2']);
      const size = readFileSync(bundles.m2 as string).length;
      expect([r.last?.nodes.n2?.fetched, r.last?.nodes.n3?.fetched]).toEqual([size, size]);
    });

    it('a model that fails its health check: every node back on the previous model', async () => {
      const dir = await cluster('model-bad', { model: true });
      const r = run(dir, 'push', bundles['m3-bad']);
      expect(r.outcome).toBe('rolled-back');
      expect(r.models).toEqual({ n1: 'm1', n2: 'm1', n3: 'm1' });
      expect(r.engines).toEqual(['running 1.0 model m1', 'running 1.0 model m1', 'running 1.0 model m1']);
    });

    it('a model for another engine, and the model that runs already, are refused before any node changes', async () => {
      const dir = await cluster('model-refused', { model: true });
      const wrong = run(dir, 'push', bundles['m2-dllama']);
      expect(wrong.outcome).toMatch(/^refused: the bundle is for dllama, but this cluster runs llama\.cpp.*nothing was changed on any node/);
      const same = run(dir, 'push', bundles.m1);
      expect(same.outcome).toMatch(/^refused: model m1 is the one every node serves already/);
      expect(same.models).toEqual({ n1: 'm1', n2: 'm1', n3: 'm1' });
    });

    it('a power cut while the new model is checked: rolled back on every node after restart', async () => {
      const dir = await cluster('model-kill', { model: true });
      expect(run(dir, 'push', bundles.m2, 'checking').signal).toBe('SIGKILL');
      const resumed = run(dir, 'resume');
      expect(resumed.outcome).toBe('rolled-back');
      expect(resumed.models).toEqual({ n1: 'm1', n2: 'm1', n3: 'm1' });
      expect(resumed.engines).toEqual(['running 1.0 model m1', 'running 1.0 model m1', 'running 1.0 model m1']);
    });

    it('a node that was away during a model update gets the model before the root starts with it', async () => {
      const dir = await cluster('model-away', { model: true });
      expect(run(dir, 'push', bundles.m2).outcome).toBe('committed');
      rmSync(join(dir, 'n3/model'), { recursive: true });
      const fresh = new VersionStore(join(dir, 'n3/model'));
      await fresh.stage(createReadStream(bundles.m1 as string), { trusted: [key.publicKey], expect: { kind: 'model' } });
      await fresh.switchTo('m1');
      const r = run(dir, 'align');
      expect(JSON.parse(r.outcome)).toEqual({ changed: ['n3'], problems: [] });
      expect(r.models).toEqual({ n1: 'm2', n2: 'm2', n3: 'm2' });
    });
  });
});
