import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyGguf } from '../../src/host/model/tiny-gguf.js';
import { createApiFront } from '../../src/node/api/api-front.js';
import { llamaCpp } from '../../src/shared/engines/llama-cpp.js';
import { ensureLlamaRoot, LLAMA_ROOT, waitReady } from '../helpers/llama-server.js';

/**
 * The API front (in-process, createApiFront) in front of Debian's real llama-server (amd64,
 * the chroot of tiny-model.test.ts), started with the node's own launch line. An abandoned
 * long request, streamed or not, must stop its generation in the engine: a short request sent
 * right after the abort takes about as long as it does alone, and llama-server's log shows the
 * task cancelled far short of its tokens.
 *
 * One slot (-np 1; the node's line leaves llama-server's default, 4 slots sharing the context):
 * the short request then has to wait for the slot while the abandoned generation goes on, which
 * is what the times show. With 4 slots it would run beside it, only slower.
 */
const ENGINE_PORT = 18311;
const CONTEXT = 512;
const MODEL = '/tmp/api-engine-tiny.gguf';
/** The streamed request's max_tokens. */
const LONG = 200;
/**
 * The non-streamed one's: llama-server looks at a non-streamed request's connection once a
 * second, so the abandoned generation runs up to a second more; 400 tokens (about 6 s) keep what
 * is left after the abort at 1 s well above that.
 */
const LONGER = 400;

/** The tiny model made slow enough (about 15 ms a token on one thread here) that 200 tokens take seconds. */
const slowTiny = () => tinyGguf({ embedding: 768, layers: 8, feedForward: 3072, heads: 8, kvHeads: 8, contextLength: CONTEXT, name: 'pi-image-tiny-slow' });

let engine: ResultPromise | undefined;
let log = '';
/** When the log said each task's slot was released (performance.now()). */
const releasedAt = new Map<number, number>();
let front: Server | undefined;
let url = '';
const engineUrl = `http://127.0.0.1:${ENGINE_PORT}`;

const chat = (content: string, extra: Record<string, unknown>, signal?: AbortSignal) =>
  fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [{ role: 'user', content }], temperature: 0, ...extra }), signal });

/** A 4-token request through the front, timed from sending to the whole answer. */
async function short(): Promise<number> {
  const start = performance.now();
  const res = await chat('hello pi cluster', { max_tokens: 4 });
  const body = (await res.json()) as { choices: { finish_reason: string }[]; usage: { completion_tokens: number } };
  expect(res.status).toBe(200);
  expect(body.usage.completion_tokens).toBe(4);
  return performance.now() - start;
}

interface Slot {
  id: number;
  is_processing: boolean;
}
/**
 * The test's own calls to llama-server, one connection each (agent: false): llama-server gives
 * every open connection one of its few HTTP threads (3 with one slot), and fetch's keep-alive
 * connections held them, delaying the front's next request by a second.
 */
function engineCall(path: string, body?: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request(`${engineUrl}${path}`, { method: body === undefined ? 'GET' : 'POST', agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(JSON.parse(text)));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
const slots = async () => (await engineCall('/slots')) as Slot[];

/** llama-server's own account of a task: cancelled or not, and the tokens its slot held when it stopped (prompt + generated). */
function taskInLog(task: number): { cancelled: boolean; tokens?: number } {
  const cancelled = new RegExp(`cancel task, id_task = ${task}\\b`).test(log);
  const release = new RegExp(`task ${task} \\| stop processing: n_tokens = (\\d+)`).exec(log);
  return { cancelled, tokens: release ? Number(release[1]) : undefined };
}

const tasksSoFar = () => new Set([...log.matchAll(/task (\d+) \| processing task/g)].map((m) => Number(m[1])));

async function promptTokens(content: string): Promise<number> {
  const { prompt } = (await engineCall('/apply-template', { messages: [{ role: 'user', content }] })) as { prompt: string };
  const { tokens } = (await engineCall('/tokenize', { content: prompt, add_special: true })) as { tokens: number[] };
  return tokens.length;
}

async function until(what: () => boolean | Promise<boolean>, timeoutMs: number, label: string): Promise<number> {
  const start = performance.now();
  while (!(await what())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${label}\n${log.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now() - start;
}

describe('the API front on the real llama-server', () => {
  let alone = 0;

  beforeAll(async () => {
    await ensureLlamaRoot();
    mkdirSync(join(LLAMA_ROOT, 'tmp'), { recursive: true });
    writeFileSync(join(LLAMA_ROOT, MODEL), slowTiny());
    // The node's launch line, plus --ignore-eos (random weights may pick EOS at once, and the front passes no ignore_eos) and one slot.
    const line = llamaCpp.root({ model: MODEL, apiPort: ENGINE_PORT, threads: 1, contextLength: CONTEXT, workers: [] });
    engine = execa('chroot', [LLAMA_ROOT, line.command, ...line.args, '--ignore-eos', '-np', '1'], { reject: false, all: true, buffer: false });
    engine.all?.on('data', (d: Buffer) => {
      log += d.toString();
      for (const m of d.toString().matchAll(/task (\d+) \| stop processing/g)) releasedAt.set(Number(m[1]), performance.now());
    });
    await waitReady(ENGINE_PORT, engine, () => log);
    front = createApiFront({ engineUrl, modelName: 'tiny', contextLength: CONTEXT });
    await new Promise<void>((r) => front?.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
    // Once to warm up, then the figure: a 4-token request alone.
    await short();
    alone = await short();
    console.log(`a 4-token request alone: ${alone.toFixed(0)} ms`);
  }, 20 * 60_000);

  afterAll(async () => {
    front?.closeAllConnections();
    front?.close();
    engine?.kill('SIGTERM');
    await engine;
    rmSync(join(LLAMA_ROOT, MODEL), { force: true });
  });

  it('a long streamed request abandoned at its second chunk stops in the engine; the next request is not kept waiting', async () => {
    const before = tasksSoFar();
    const client = new AbortController();
    const res = await chat('tell me a long story about the pi cluster', { max_tokens: LONG, stream: true }, client.signal);
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let chunks = 0;
    while (chunks < 2) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the stream ended before its second chunk');
      chunks += new TextDecoder().decode(value).split('\n\n').filter((e) => e.startsWith('data:')).length;
    }
    client.abort();
    const aborted = performance.now();
    const task = [...tasksSoFar()].find((t) => !before.has(t));
    expect(task, 'the long request started a task in llama-server').toBeDefined();
    const next = await short();
    // Watched in the log, not by polling /slots: see the non-streamed test.
    await until(() => taskInLog(task as number).tokens !== undefined, 3000, `task ${task} released`);
    const stoppedAfter = (releasedAt.get(task as number) ?? NaN) - aborted;
    expect((await slots()).every((s) => !s.is_processing), 'every slot idle').toBe(true);
    const { cancelled, tokens } = taskInLog(task as number);
    const decoded = (tokens as number) - (await promptTokens('tell me a long story about the pi cluster'));
    console.log(`streamed, abandoned at chunk 2: llama-server released the slot ${stoppedAfter.toFixed(0)} ms after the abort, cancelled task ${task}: ${cancelled}, after ${decoded} of ${LONG} tokens; the next 4-token request took ${next.toFixed(0)} ms (alone ${alone.toFixed(0)} ms)`);
    expect(cancelled).toBe(true);
    expect(decoded).toBeLessThan(LONG / 4);
    expect(next).toBeLessThan(3 * alone + 1000);
  }, 60_000);

  it('a long non-streamed request abandoned after 1 s stops in the engine; the next request is not kept waiting', async () => {
    const before = tasksSoFar();
    const client = new AbortController();
    const answer = chat('tell me another long story about the pi cluster', { max_tokens: LONGER }, client.signal).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 1000));
    const task = [...tasksSoFar()].find((t) => !before.has(t));
    expect(task, 'the long request started a task in llama-server').toBeDefined();
    expect((await slots()).some((s) => s.is_processing), 'still generating after 1 s').toBe(true);
    client.abort();
    const aborted = performance.now();
    expect(await answer).toBeInstanceOf(Error);
    const next = await short();
    // llama-server looks at a non-streamed request's connection when a second passes with no
    // result for any task — so it is watched in the log here: polling /slots every few ms wakes
    // that wait each time, and the closed connection was never noticed.
    await until(() => taskInLog(task as number).tokens !== undefined, 3000, `task ${task} released`);
    const stoppedAfter = (releasedAt.get(task as number) ?? NaN) - aborted;
    expect((await slots()).every((s) => !s.is_processing), 'every slot idle').toBe(true);
    const { cancelled, tokens } = taskInLog(task as number);
    const decoded = (tokens as number) - (await promptTokens('tell me another long story about the pi cluster'));
    console.log(`non-streamed, abandoned after 1 s: llama-server released the slot ${stoppedAfter.toFixed(0)} ms after the abort, cancelled task ${task}: ${cancelled}, after ${decoded} of ${LONGER} tokens; the next 4-token request took ${next.toFixed(0)} ms (alone ${alone.toFixed(0)} ms)`);
    expect(cancelled).toBe(true);
    expect(decoded).toBeLessThan(LONGER / 2);
    // Up to a second of llama-server's own polling, then the request as alone.
    expect(next).toBeLessThan(3 * alone + 2000);
  }, 60_000);

  it('refuses a prompt longer than the context with 400, counted by llama-server\'s /tokenize, before the engine generates', async () => {
    const before = tasksSoFar();
    const res = await chat('hello pi cluster '.repeat(200), { max_tokens: 4 });
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { message: string; code: string } };
    expect(error.message).toMatch(new RegExp(`${CONTEXT} tokens`));
    expect(error.code).toBe('context_length_exceeded');
    expect([...tasksSoFar()].filter((t) => !before.has(t))).toEqual([]);
    expect(await short()).toBeLessThan(3 * alone + 1000);
  }, 60_000);
});
