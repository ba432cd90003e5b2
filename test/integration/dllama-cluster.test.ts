import { execa, type ResultPromise } from 'execa';
import { appendFileSync, chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

describe('a dllama cluster of two emulated nodes, dllama built from source', () => {
  let cluster: EmulatedCluster;
  let engineKey = '';
  const out = join(work, 'out');
  const image = join(out, 'pi-image-qemu.img');

  beforeAll(async () => {
    writeFileSync(join(work, 'tiny.m'), tinyDllamaModel());
    writeFileSync(join(work, 'tiny.t'), tinyDllamaTokenizer());
    const { file, sha256 } = DLLAMA_SOURCES['0.16.4'];
    const built = await runCli(
      [
        'build', '--board', 'qemu', ...QEMU_TEST_FLAGS,
        // The llama.cpp layer too keeps the suite's cached base (its package set is the cache key).
        '--layer', 'engine-llama-cpp', '--layer', join(REPO, 'test/fixtures/layers/serial-console'),
        '--engine', 'dllama', '--engine-source', vendored(file), '--engine-sha256', sha256, '--engine-temperature', '0',
        '--cluster', 'dl', '--cluster-size', '2', '--model', join(work, 'tiny.m'), '--tokenizer', join(work, 'tiny.t'), '--context-length', '256',
        '--json', '--out', out,
      ],
      { env: { PI_IMAGE_CACHE: TEST_CACHE } },
    );
    expectOk(built);
    expect(Object.keys(stageCaching(built))).toEqual(['base', 'engine', 'layers', 'disk', 'artifacts']);
    engineKey = (JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { inputs: { cache_keys: { engine: string } } }).inputs.cache_keys.engine;
    cluster = await startCluster({
      image,
      nodes: 2,
      cpus: 1,
      memoryMib: 1024,
      firstApiPort: 18210,
      onOutput: (i, text) => {
        if (process.env.PI_IMAGE_TEST_CONSOLES) appendFileSync(join(process.env.PI_IMAGE_TEST_CONSOLES, `dllama-node${i + 1}.log`), text);
      },
    });
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
      expect((await execa('debugfs', ['-R', `stat /opt/pi-image/engine/bin/${binary}`, rootfs])).stdout, binary).toMatch(/Type: regular\s+Mode:\s+0755/);
    }
  });

  let clusterAnswer = '';

  it('assembles with no input and serves the official client, streamed and not, with finish_reason set', async () => {
    const started = Date.now();
    const deadline = started + 25 * 60_000;
    let ready = false;
    while (!ready && Date.now() < deadline) {
      for (const port of cluster.apiPorts) {
        const health = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5000) }).then((r) => (r.ok ? (r.json() as Promise<{ ready?: boolean; workers?: unknown[] }>) : undefined), () => undefined);
        if (health?.ready && health.workers?.length === 1) ready = true;
      }
      if (!ready) await sleep(5000);
    }
    if (!ready) {
      const states = await Promise.all(cluster.vms.map((vm) => vm.run('pi-node status; journalctl -u pi-image-agent -u pi-image-engine --no-pager | tail -n 40', 60_000).then((r) => r.output, () => '')));
      throw new Error(`the dllama cluster did not serve within 25 min:\n${states.join('\n---\n')}`);
    }
    figures.push(`VM start to a ready dllama root with its worker: ${Math.round((Date.now() - started) / 1000)} s`);
    const rootPort = (
      await Promise.all(cluster.apiPorts.map(async (port) => ((await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.json(), () => ({}))) as { ready?: boolean }).ready ? port : 0))
    ).find(Boolean) as number;
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
