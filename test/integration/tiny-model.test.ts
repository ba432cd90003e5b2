import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEMO_SENTENCE, demoGguf } from '../../src/host/model/demo-gguf.js';
import { tinyGguf } from '../../src/host/model/tiny-gguf.js';
import { ensureLlamaRoot, LLAMA_ROOT as ROOT, RPC_SERVER, waitReady } from '../helpers/llama-server.js';

/**
 * The project's tiny models in the real llama.cpp: Debian forky's llama-server (amd64, in a
 * chroot made once with mmdebstrap and cached), run greedily, then with every layer on a real
 * ggml RPC server: the generated token ids must be the same. The demo model answers its
 * sentence both ways.
 */
const RPC_PORT = 50152;

/** Starts llama-server on `model` (a path in the chroot), runs `use` on its URL, stops it. */
async function withServer<T>(model: string, port: number, extra: string[], use: (url: string) => Promise<T>): Promise<T> {
  let log = '';
  const server = execa('chroot', [ROOT, 'llama-server', '-m', model, '--host', '127.0.0.1', '--port', String(port), '-t', '1', '-c', '256', ...extra], { reject: false, all: true, buffer: false });
  server.all?.on('data', (d: Buffer) => (log += d.toString()));
  try {
    await waitReady(port, server, () => log);
    return await use(`http://127.0.0.1:${port}`);
  } finally {
    server.kill('SIGTERM');
    await server;
  }
}

interface Completion {
  tokens: number[];
  /** Per generated token: the 5 likeliest tokens and their log-probabilities, which every layer's work moves. */
  probs: { top_logprobs: { id: number; logprob: number }[] }[];
}

/** 24 greedy tokens after `prompt` (EOS ignored: random weights may pick it first, the demo model picks it after its sentence). */
async function complete(url: string, prompt = 'hello pi cluster'): Promise<Completion> {
  const res = await fetch(`${url}/completion`, {
    method: 'POST',
    body: JSON.stringify({ prompt, n_predict: 24, temperature: 0, ignore_eos: true, return_tokens: true, cache_prompt: false, n_probs: 5 }),
  });
  const body = (await res.json()) as { tokens: number[]; completion_probabilities: Completion['probs'] };
  return { tokens: body.tokens, probs: body.completion_probabilities };
}

/** Starts llama-server, asks for 24 greedy tokens, stops it. */
async function generateTokens(port: number, extra: string[] = [], whileServing?: () => Promise<void>): Promise<{ tokens: number[] }> {
  return withServer('/tmp/tiny.gguf', port, extra, async (url) => {
    const { tokens } = await complete(url);
    await whileServing?.();
    return { tokens };
  });
}

/** Runs `use` with a ggml RPC server on RPC_PORT; checks that the root held a connection to it while `use` ran. */
async function withRpcServer<T>(use: (rootFlags: string[], connectedNow: () => Promise<number>) => Promise<T>): Promise<T> {
  let rpcLog = '';
  const rpc = execa('chroot', [ROOT, RPC_SERVER, '-H', '127.0.0.1', '-p', String(RPC_PORT)], { reject: false, all: true, buffer: false });
  rpc.all?.on('data', (d: Buffer) => (rpcLog += d.toString()));
  let result: T;
  try {
    await new Promise((r) => setTimeout(r, 1500));
    // The root holds a connection to the RPC server while it serves: the layers live there.
    const connectedNow = async () => (await execa('ss', ['-Htn', 'state', 'established', `( sport = :${RPC_PORT} )`])).stdout.split('\n').filter(Boolean).length;
    result = await use(['--rpc', `127.0.0.1:${RPC_PORT}`, '-ngl', '99'], connectedNow);
  } finally {
    rpc.kill('SIGTERM');
    await rpc;
  }
  expect(rpcLog).toContain('Starting RPC server');
  return result;
}

interface ChatAnswer {
  content: string;
  finishReason: string;
  tokensPerSecond: number;
}

async function chat(url: string, content: string, extra: Record<string, unknown> = { temperature: 0 }): Promise<ChatAnswer> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content }], max_tokens: 32, ...extra }),
  });
  const body = (await res.json()) as { choices: { message: { content: string }; finish_reason: string }[]; timings: { predicted_per_second: number } };
  return { content: body.choices[0]?.message.content ?? '', finishReason: body.choices[0]?.finish_reason ?? '', tokensPerSecond: body.timings.predicted_per_second };
}

const PROMPTS = ['Hello, cluster', 'What is 2 + 2?', '', 'Tell me a long story about a Raspberry Pi.'];

/** The demo model's answers to PROMPTS (greedy, then with llama-server's default sampling) and its top log-probabilities. */
async function demoRun(url: string): Promise<{ answers: ChatAnswer[]; sampled: ChatAnswer; completion: Completion }> {
  const answers: ChatAnswer[] = [];
  for (const p of PROMPTS) answers.push(await chat(url, p));
  return { answers, sampled: await chat(url, PROMPTS[0] as string, {}), completion: await complete(url) };
}

const sha = (tokens: number[]) => createHash('sha256').update(JSON.stringify(tokens)).digest('hex');

describe('tiny GGUF model in the real llama.cpp', () => {
  beforeAll(async () => {
    await ensureLlamaRoot();
    mkdirSync(join(ROOT, 'tmp'), { recursive: true });
    writeFileSync(join(ROOT, 'tmp/tiny.gguf'), tinyGguf());
    writeFileSync(join(ROOT, 'tmp/demo.gguf'), demoGguf());
  }, 20 * 60_000);

  it('loads and generates the same token ids twice at temperature 0', async () => {
    const a = await generateTokens(18201);
    expect(a.tokens).toHaveLength(24);
    expect(sha((await generateTokens(18202)).tokens)).toBe(sha(a.tokens));
  }, 180_000);

  it('gives the same token ids with every layer on a ggml RPC server', async () => {
    const local = await generateTokens(18203);
    await withRpcServer(async (flags, connectedNow) => {
      let connections = 0;
      const remote = await generateTokens(18204, flags, async () => {
        connections = await connectedNow();
      });
      expect(connections).toBeGreaterThan(0);
      expect(sha(remote.tokens)).toBe(sha(local.tokens));
    });
  }, 240_000);

  it(`demo model: answers "${DEMO_SENTENCE}" to any chat prompt, and the same with every layer on a ggml RPC server`, async () => {
    const local = await withServer('/tmp/demo.gguf', 18205, [], demoRun);
    const remote = await withRpcServer(async (flags, connectedNow) =>
      withServer('/tmp/demo.gguf', 18206, flags, async (url) => {
        const run = await demoRun(url);
        expect(await connectedNow()).toBeGreaterThan(0);
        return run;
      }),
    );
    for (const run of [local, remote]) {
      for (const a of [...run.answers, run.sampled]) expect(a).toMatchObject({ content: DEMO_SENTENCE, finishReason: 'stop' });
    }
    // The layers' work, where the sentence does not show it: the same runner-up tokens and log-probabilities both ways.
    expect(remote.completion.tokens).toEqual(local.completion.tokens);
    const flat = (c: Completion) => c.probs.flatMap((p) => p.top_logprobs.map((t) => [t.id, t.logprob] as const));
    const [l, r] = [flat(local.completion), flat(remote.completion)];
    expect(r.map(([id]) => id)).toEqual(l.map(([id]) => id));
    r.forEach(([, lp], i) => expect(lp).toBeCloseTo(l[i]?.[1] as number, 3));
    const speed = (run: typeof local) => Math.min(...run.answers.map((a) => a.tokensPerSecond)).toFixed(0);
    process.stdout.write(`\ndemo model: at least ${speed(local)} tokens/s locally, ${speed(remote)} tokens/s with the layers over RPC (1 thread)\n`);
  }, 240_000);
});
