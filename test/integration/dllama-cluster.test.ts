import { execa, type ResultPromise } from 'execa';
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPartitionTable } from '../../src/host/disk/partition-table.js';
import { startCluster, type EmulatedCluster } from '../../src/host/emulate/cluster.js';
import { tinyDllamaModel, tinyDllamaTokenizer } from '../../src/host/model/tiny-dllama.js';
import { silentReporter } from '../../src/host/progress.js';
import { expectOk, QEMU_TEST_FLAGS, REPO, runCli, stageCaching, TEST_CACHE } from '../helpers/cli.js';
import { DLLAMA_SOURCES, vendored } from '../helpers/vendor.js';

/**
 * distributed-llama as a user deploys it: compiled from its release tarball during the build,
 * the tiny .m model baked in, two emulated nodes that assemble by themselves (root: dllama-api
 * with the worker list; worker: `dllama worker`) and answer through the API front.
 */
const work = mkdtempSync(join(tmpdir(), 'pi-image-dllama-it-'));
const PROMPT = 'Hello';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const figures: string[] = [];

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  if (figures.length) process.stdout.write(`\ndllama cluster figures:\n  ${figures.join('\n  ')}\n`);
});

/** The qemu image with dllama compiled from the release tarball of `version`, the tiny model baked in. */
async function buildImage(version: keyof typeof DLLAMA_SOURCES, out: string, extra: string[] = []) {
  const { file, sha256 } = DLLAMA_SOURCES[version];
  const built = await runCli(
    [
      'build', '--board', 'qemu', ...QEMU_TEST_FLAGS,
      // The llama.cpp layer too keeps the suite's cached base (its package set is the cache key).
      '--layer', 'engine-llama-cpp', '--layer', join(REPO, 'test/fixtures/layers/serial-console'),
      '--engine', 'dllama', '--engine-source', vendored(file), '--engine-sha256', sha256, '--engine-temperature', '0',
      '--cluster', 'dl', '--cluster-size', '2', '--model', join(work, 'tiny.m'), '--tokenizer', join(work, 'tiny.t'), '--context-length', '256',
      ...extra, '--json', '--out', out,
    ],
    { env: { PI_IMAGE_CACHE: TEST_CACHE } },
  );
  expectOk(built);
  return built;
}

/** Waits until a node answers /healthz as a ready root with its worker; its API port. */
async function waitServing(cluster: EmulatedCluster, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const port of cluster.apiPorts) {
      const health = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5000) }).then((r) => (r.ok ? (r.json() as Promise<{ ready?: boolean; workers?: unknown[] }>) : undefined), () => undefined);
      if (health?.ready && health.workers?.length === 1) return port;
    }
    await sleep(5000);
  }
  const states = await Promise.all(cluster.vms.map((vm) => vm.run('pi-node status; journalctl -u pi-image-agent -u pi-image-engine --no-pager | tail -n 40', 60_000).then((r) => r.output, () => '')));
  throw new Error(`the dllama cluster did not serve within ${timeoutMs / 60_000} min:\n${states.join('\n---\n')}`);
}

const bootCluster = (image: string, firstApiPort: number, label: string) =>
  startCluster({
    image,
    nodes: 2,
    cpus: 1,
    memoryMib: 1024,
    firstApiPort,
    onOutput: (i, text) => {
      if (process.env.PI_IMAGE_TEST_CONSOLES) appendFileSync(join(process.env.PI_IMAGE_TEST_CONSOLES, `${label}-node${i + 1}.log`), text);
    },
  });

writeFileSync(join(work, 'tiny.m'), tinyDllamaModel());
writeFileSync(join(work, 'tiny.t'), tinyDllamaTokenizer());
/** The cluster's answer at temperature 0, which every other run must give too. */
let clusterAnswer = '';
/** The engine stage's cache entry of v0.16.4 (its binaries: a runtime bundle's content). */
let engineKey = '';

describe('a dllama cluster of two emulated nodes, dllama built from source', () => {
  let cluster: EmulatedCluster;
  const out = join(work, 'out');
  const image = join(out, 'pi-image-qemu.img');

  beforeAll(async () => {
    const built = await buildImage('0.16.4', out);
    expect(Object.keys(stageCaching(built))).toEqual(['base', 'engine', 'layers', 'disk', 'artifacts']);
    engineKey = (JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { inputs: { cache_keys: { engine: string } } }).inputs.cache_keys.engine;
    cluster = await bootCluster(image, 18210, 'dllama');
  }, 45 * 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('has the compiled runtime in its root file system and its manifest', async () => {
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { engine_build: unknown };
    expect(manifest.engine_build).toMatchObject({ engine: 'dllama', version: '0.16.4', cxxflags: '-std=c++11 -O3 -mcpu=cortex-a76', compiler: expect.stringMatching(/g\+\+/), files: [{ name: 'dllama' }, { name: 'dllama-api' }] });
    const table = await readPartitionTable(image, silentReporter);
    const rootfs = `${image}?offset=${(table.partitions[1] as { start: number }).start * 512}`;
    for (const binary of ['dllama', 'dllama-api']) {
      expect((await execa('debugfs', ['-R', `stat /opt/pi-image/runtime/versions/0.16.4/${binary}`, rootfs])).stdout, binary).toMatch(/Type: regular\s+Mode:\s+0755/);
    }
  });

  it('assembles with no input and serves the official client, streamed and not, with finish_reason set', async () => {
    const started = Date.now();
    const rootPort = await waitServing(cluster, 25 * 60_000);
    figures.push(`VM start to a ready dllama root with its worker: ${Math.round((Date.now() - started) / 1000)} s`);
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${rootPort}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 10 * 60_000 });
    const plain = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: PROMPT }], max_tokens: 12 });
    expect(plain.choices[0]?.finish_reason).toMatch(/^(stop|length)$/);
    clusterAnswer = plain.choices[0]?.message.content ?? '';
    expect(clusterAnswer).toMatch(/^[\x20-\x7e]+$/);
    let streamed = '';
    const reasons: string[] = [];
    for await (const chunk of await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: PROMPT }], max_tokens: 12, stream: true })) {
      streamed += chunk.choices[0]?.delta.content ?? '';
      if (chunk.choices[0]?.finish_reason) reasons.push(chunk.choices[0].finish_reason);
    }
    expect(reasons).toHaveLength(1);
    expect(streamed).toBe(clusterAnswer);
    figures.push(`answer on 2 nodes: ${JSON.stringify(clusterAnswer)}`);
  }, 30 * 60_000);

  it("restarts a crashed dllama-api and reports it; the cluster serves the same text again", async () => {
    const rootIndex = (await Promise.all(cluster.vms.map(async (vm) => (JSON.parse(await vm.check('pi-node status --json')) as { role: string }).role))).indexOf('root');
    const root = cluster.vms[rootIndex] as (typeof cluster.vms)[number];
    const crashedAt = Date.now();
    await root.check('kill -SEGV $(systemctl show -p MainPID --value pi-image-engine)');
    let status: { engine: { state: string; crashes: number; lastCrash?: string } } | undefined;
    const deadline = Date.now() + 10 * 60_000;
    while (Date.now() < deadline) {
      status = JSON.parse(await root.check('pi-node status --json')) as typeof status;
      if (status?.engine.crashes === 1 && status.engine.state === 'ready') break;
      await sleep(3000);
    }
    expect(status?.engine).toMatchObject({ state: 'ready', crashes: 1, lastCrash: expect.stringMatching(/signal SEGV at /) });
    expect(await root.check('journalctl -u pi-image-agent --no-pager | grep -c "engine crashed: .*signal SEGV"')).toBe('1');
    figures.push(`dllama-api crash (SIGSEGV) to serving again: ${Math.round((Date.now() - crashedAt) / 1000)} s`);
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${cluster.apiPorts[rootIndex]}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 10 * 60_000 });
    const again = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: PROMPT }], max_tokens: 12 });
    expect(again.choices[0]?.message.content).toBe(clusterAnswer);
  }, 15 * 60_000);

  it('answers with the text of one node alone (the same dllama-api under qemu-user on this machine)', async () => {
    const binary = join(TEST_CACHE, 'engine', engineKey, 'bin/dllama-api');
    chmodSync(binary, 0o755);
    const port = 19811;
    const alone: ResultPromise = execa(binary, ['--host', '127.0.0.1', '--port', String(port), '--model', join(work, 'tiny.m'), '--tokenizer', join(work, 'tiny.t'), '--buffer-float-type', 'q80', '--nthreads', '1', '--max-seq-len', '256', '--temperature', '0'], { reject: false, all: true });
    try {
      const deadline = Date.now() + 120_000;
      while (Date.now() < deadline && !(await fetch(`http://127.0.0.1:${port}/v1/models`).then((r) => r.ok, () => false))) await sleep(500);
      const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [{ role: 'user', content: PROMPT }], max_tokens: 12 }) });
      const body = (await res.json()) as { choices: { message: { content: string } }[] };
      expect(body.choices[0]?.message.content).toBe(clusterAnswer);
    } finally {
      alone.kill();
    }
  }, 5 * 60_000);
});

describe('the same cluster with dllama v0.16.3 (its dllama-api has no --host)', () => {
  let cluster: EmulatedCluster;
  const out = join(work, 'out-0.16.3');

  beforeAll(async () => {
    expectOk(await runCli(['keys', 'new', '--dir', work, '--name', 'ota']));
    const built = await buildImage('0.16.3', out, ['--ota-key', join(work, 'ota.pub')]);
    expect(Object.keys(stageCaching(built))).toEqual(['base', 'engine', 'layers', 'disk', 'artifacts']);
    cluster = await bootCluster(join(out, 'pi-image-qemu.img'), 18220, 'dllama-0.16.3');
  }, 45 * 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('assembles with no input and serves the same answer', async () => {
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { engine_build: unknown };
    expect(manifest.engine_build).toMatchObject({ engine: 'dllama', version: '0.16.3' });
    const started = Date.now();
    const rootPort = await waitServing(cluster, 25 * 60_000);
    figures.push(`v0.16.3: VM start to a ready dllama root with its worker: ${Math.round((Date.now() - started) / 1000)} s`);
    const root = cluster.vms[cluster.apiPorts.indexOf(rootPort)] as (typeof cluster.vms)[number];
    const line = (JSON.parse(await root.check('pi-node status --json')) as { engine: { command: string } }).engine.command;
    expect(line).toMatch(/dllama-api --port \d+ /);
    expect(line).not.toContain('--host');
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${rootPort}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 10 * 60_000 });
    const answer = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: PROMPT }], max_tokens: 12 });
    expect(answer.choices[0]?.finish_reason).toMatch(/^(stop|length)$/);
    expect(answer.choices[0]?.message.content).toBe(clusterAnswer);
  }, 30 * 60_000);

  /** `pi-image ota …` against the root's OTA push port. */
  const ota = (args: string[]) => runCli(['ota', ...args, '--cluster', `127.0.0.1:${cluster.otaPorts[rootIndex]}`, '--key', join(work, 'ota.key')], { env: { PI_IMAGE_CACHE: TEST_CACHE } });
  let rootIndex = -1;
  const engineLine = async () => (JSON.parse(await (cluster.vms[rootIndex] as (typeof cluster.vms)[number]).check('pi-node status --json')) as { engine: { command: string } }).engine.command;
  const answer = async () => {
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${cluster.apiPorts[rootIndex]}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 10 * 60_000 });
    return (await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: PROMPT }], max_tokens: 12 })).choices[0]?.message.content;
  };
  interface OtaStatus {
    runtime: { current: string; previous?: string };
    model: { current: string; previous?: string; installed: string[] };
    nodes: { runtime: { current: string; previous?: string }; model: { current: string; previous?: string; installed: string[] } }[];
    last?: { kind: string; phase: string; reason?: string; nodes: Record<string, { fetched?: number }>; timings: Record<string, number> };
  }
  const otaStatus = async () => {
    const run = await ota(['status', '--json']);
    expectOk(run);
    return run.events.find((e) => e.type === 'result')?.data as OtaStatus;
  };
  /**
   * A runtime bundle as the owner makes one: `runtime pack --engine-source` compiles the
   * release tarball for the board as the image build did (its cached engine stage: the very
   * binaries of the image built from that tarball), signed with the owner's key.
   */
  async function pack(version: keyof typeof DLLAMA_SOURCES, healthText: string): Promise<string> {
    const { file, sha256 } = DLLAMA_SOURCES[version];
    const bundle = join(work, `${version}-${healthText.length}.bundle`);
    const health = createHash('sha256').update(healthText).digest('hex');
    const packed = await runCli(
      ['runtime', 'pack', '--engine', 'dllama', '--engine-source', vendored(file), '--engine-sha256', sha256, '--board', 'qemu', '--key', join(work, 'ota.key'), '--health-prompt', PROMPT, '--health-tokens', '12', '--health-text-sha256', health, '-o', bundle, '--json'],
      { env: { PI_IMAGE_CACHE: TEST_CACHE } },
    );
    expectOk(packed);
    expect(stageCaching(packed)).toEqual({ engine: true });
    return bundle;
  }

  it('updates every node to v0.16.4 over the network: pushed to the root, staged, switched at once, health-checked, committed', async () => {
    rootIndex = cluster.apiPorts.indexOf(await waitServing(cluster, 5 * 60_000));
    const bundle = await pack('0.16.4', clusterAnswer);
    const started = Date.now();
    const push = await ota(['push', bundle]);
    expectOk(push);
    expect(push.stdout).toMatch(/every node runs runtime 0\.16\.4 \(was 0\.16\.3\)/);
    const status = await otaStatus();
    expect([status.runtime, ...status.nodes.map((n) => n.runtime)]).toEqual([
      { current: '0.16.4', previous: '0.16.3', installed: ['0.16.3', '0.16.4'] },
      { current: '0.16.4', previous: '0.16.3', installed: ['0.16.3', '0.16.4'] },
    ]);
    expect(status.last?.phase).toBe('committed');
    figures.push(`OTA 0.16.3 → 0.16.4 on 2 nodes: ${Math.round((Date.now() - started) / 1000)} s (phases ${JSON.stringify(status.last?.timings)}); the worker fetched ${JSON.stringify(status.last?.nodes)} bytes of a ${statSync(bundle).size}-byte bundle`);
    // The new version's launch line (v0.16.4 binds with --host) from the versioned folder.
    expect(await engineLine()).toMatch(/^\/opt\/pi-image\/runtime\/versions\/0\.16\.4\/dllama-api --host 127\.0\.0\.1 /);
    expect(await answer()).toBe(clusterAnswer);
  }, 30 * 60_000);

  it('a bundle that fails its health check (wrong output) is rolled back on every node, which serves again', async () => {
    const bundle = await pack('0.16.3', 'not what this engine says');
    const started = Date.now();
    const push = await ota(['push', bundle, '--allow-downgrade']);
    expect(push.exitCode).toBe(1);
    expect(push.stderr).toMatch(/rolled-back: health check: the output of "Hello" hashes to/);
    expect(push.stderr).toMatch(/every node is back on 0\.16\.4/);
    figures.push(`OTA rollback (health check failed) on 2 nodes: ${Math.round((Date.now() - started) / 1000)} s`);
    const status = await otaStatus();
    expect([status.runtime.current, ...status.nodes.map((n) => n.runtime.current)]).toEqual(['0.16.4', '0.16.4']);
    expect(await engineLine()).toMatch(/versions\/0\.16\.4\/dllama-api --host/);
    expect(await answer()).toBe(clusterAnswer);
  }, 30 * 60_000);

  it('refuses a tampered bundle, a key it does not trust and a request without the key, changing nothing', async () => {
    const good = await pack('0.16.4', clusterAnswer);
    const tampered = join(work, 'tampered.bundle');
    const bytes = readFileSync(good);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 5000) ^ 0xff, bytes.length - 5000);
    writeFileSync(tampered, bytes);
    const refused = await ota(['push', tampered, '--allow-downgrade']);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/refused the bundle: .*(SHA-256|tampered).*nothing was changed on any node/);
    expectOk(await runCli(['keys', 'new', '--dir', work, '--name', 'stranger']));
    const stranger = await runCli(['ota', 'status', '--cluster', `127.0.0.1:${cluster.otaPorts[rootIndex]}`, '--key', join(work, 'stranger.key')]);
    expect(stranger.exitCode).toBe(1);
    expect(stranger.stderr).toMatch(/refused the update key: key \w+ is not one this cluster trusts/);
    const anonymous = await fetch(`http://127.0.0.1:${cluster.otaPorts[rootIndex]}/ota/status`);
    expect(anonymous.status).toBe(401);
    const status = await otaStatus();
    expect([status.runtime.current, ...status.nodes.map((n) => n.runtime.current)]).toEqual(['0.16.4', '0.16.4']);
    expect(status.last?.phase).toBe('rolled-back');
  }, 10 * 60_000);

  it('replaces the model on every node over the network, and rolls a model that fails its health check back', async () => {
    const before = await otaStatus();
    expect([before.model, ...before.nodes.map((n) => n.model)]).toEqual([
      { current: 'tiny', installed: ['tiny'] },
      { current: 'tiny', installed: ['tiny'] },
    ]);
    // Another model of the same shape (other weights): it must answer something else.
    writeFileSync(join(work, 'tiny-2.m'), tinyDllamaModel({ seed: 2 }));
    const good = join(work, 'model-2.bundle');
    expectOk(await runCli(['model', 'pack', join(work, 'tiny-2.m'), '--tokenizer', join(work, 'tiny.t'), '--model-version', 'tiny-2', '--key', join(work, 'ota.key'), '-o', good]));
    const started = Date.now();
    const push = await ota(['push', good]);
    expectOk(push);
    expect(push.stdout).toMatch(/every node runs model tiny-2 \(was tiny\)/);
    const status = await otaStatus();
    expect([status.model.current, ...status.nodes.map((n) => n.model.current)]).toEqual(['tiny-2', 'tiny-2']);
    expect([status.runtime.current, ...status.nodes.map((n) => n.runtime.current)]).toEqual(['0.16.4', '0.16.4']);
    figures.push(`OTA model tiny → tiny-2 on 2 nodes: ${Math.round((Date.now() - started) / 1000)} s (phases ${JSON.stringify(status.last?.timings)}); the worker fetched ${JSON.stringify(status.last?.nodes)} bytes of a ${statSync(good).size}-byte bundle`);
    expect(await engineLine()).toMatch(/--model \/var\/lib\/pi-image\/model\/current\/model\.m --tokenizer \/var\/lib\/pi-image\/model\/current\/tokenizer\.t /);
    const newAnswer = await answer();
    expect(newAnswer).toMatch(/^[\x20-\x7e]+$/);
    expect(newAnswer).not.toBe(clusterAnswer);
    figures.push(`answer of model tiny-2: ${JSON.stringify(newAnswer)}`);

    // A third model whose bundle expects the first model's text: the health check fails.
    writeFileSync(join(work, 'tiny-3.m'), tinyDllamaModel({ seed: 3 }));
    const bad = join(work, 'model-3.bundle');
    expectOk(await runCli(['model', 'pack', join(work, 'tiny-3.m'), '--tokenizer', join(work, 'tiny.t'), '--model-version', 'tiny-3', '--key', join(work, 'ota.key'), '--health-prompt', PROMPT, '--health-tokens', '12', '--health-text-sha256', createHash('sha256').update(clusterAnswer).digest('hex'), '-o', bad]));
    const rolled = await ota(['push', bad]);
    expect(rolled.exitCode).toBe(1);
    expect(rolled.stderr).toMatch(/rolled-back: health check: the output of "Hello" hashes to/);
    expect(rolled.stderr).toMatch(/every node is back on tiny-2/);
    const after = await otaStatus();
    expect([after.model.current, ...after.nodes.map((n) => n.model.current)]).toEqual(['tiny-2', 'tiny-2']);
    expect(await answer()).toBe(newAnswer);
  }, 30 * 60_000);

  // Crash injection in the VMs (the many combinations run as real processes in
  // test/unit/node/ota/cluster-update.test.ts): a watcher on the root acts as the phase's
  // record is written, so the cut lands exactly there (it gives up after 10 minutes).
  const cutAt = (phase: string, cut: string) =>
    `setsid -f sh -c 'i=0; until grep -qs "\\"phase\\": \\"${phase}\\"" /var/lib/pi-image/ota/update.json; do i=$((i+1)); [ $i -gt 6000 ] && exit 0; sleep 0.1; done; ${cut}' >/dev/null 2>&1`;
  let modelAnswer = '';
  /** A good 0.16.3 bundle for the model served now, pushed with a cut armed on the root for `phase`: rolled back; seconds it took. */
  let goodBundle = '';
  async function pushCutAt(phase: string, cut: string): Promise<number> {
    const root = cluster.vms[rootIndex] as (typeof cluster.vms)[number];
    await root.check(cutAt(phase, cut));
    const started = Date.now();
    const push = await ota(['push', goodBundle, '--allow-downgrade']);
    expect(push.exitCode).toBe(1);
    expect(push.stderr).toMatch(/rolled-back: the root restarted before the new version was proven on every node/);
    expect(push.stderr).toMatch(/every node is back on 0\.16\.4/);
    return Math.round((Date.now() - started) / 1000);
  }

  it('the root agent SIGKILLed as the switch begins: on restart it rolls every node back, and the cluster serves', async () => {
    modelAnswer = (await answer()) ?? '';
    goodBundle = await pack('0.16.3', modelAnswer);
    const took = await pushCutAt('switching', 'systemctl kill -s KILL pi-image-agent');
    figures.push(`root agent killed while switching → rolled back and serving: ${took} s`);
    await waitServing(cluster, 10 * 60_000);
    const status = await otaStatus();
    expect([status.runtime.current, ...status.nodes.map((n) => n.runtime.current)]).toEqual(['0.16.4', '0.16.4']);
    expect(await answer()).toBe(modelAnswer);
  }, 20 * 60_000);

  it('the root VM hard-reset while the new version is checked: after its reboot every node is back on the previous version, serving', async () => {
    const root = cluster.vms[rootIndex] as (typeof cluster.vms)[number];
    const bootBefore = await root.check('cat /proc/sys/kernel/random/boot_id');
    const mark = root.consoleLog.length;
    // sysrq b: an immediate reset, no sync, no unmount — a power cut as the kernel sees it.
    const took = await pushCutAt('checking', 'echo b > /proc/sysrq-trigger');
    figures.push(`root VM hard-reset while checking → rolled back and serving: ${took} s`);
    // The console shell of the new boot (autologin), where the test's commands run again.
    const relogin = await root.waitFor(/login: root \(automatic login\)/, 5 * 60_000, mark);
    await root.waitFor(/root@[\w-]+:~# /, 5 * 60_000, mark + (relogin.index ?? 0));
    expect(await root.check('cat /proc/sys/kernel/random/boot_id')).not.toBe(bootBefore);
    rootIndex = cluster.apiPorts.indexOf(await waitServing(cluster, 10 * 60_000));
    const status = await otaStatus();
    expect([status.runtime.current, ...status.nodes.map((n) => n.runtime.current)]).toEqual(['0.16.4', '0.16.4']);
    expect([status.model.current, ...status.nodes.map((n) => n.model.current)]).toEqual(['tiny-2', 'tiny-2']);
    expect(await answer()).toBe(modelAnswer);
  }, 30 * 60_000);
});
