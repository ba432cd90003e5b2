import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { apiFrontLimits } from '../../../../src/node/api/api-front.js';
import { until } from './fake-engine.js';
import { frontWithEngine, hi } from './front-harness.js';
import { chatHead, rawExchange, type RawAnswer } from './raw-http.js';

/**
 * The front's limits for an appliance: bodies and headers that never complete, a full queue,
 * too many connections, a generation that runs too long (and none cut short by a hidden
 * client timeout), a prompt larger than the context. After each, a good request succeeds.
 */


function answered(a: RawAnswer | 'closed' | 'timeout'): RawAnswer {
  if (typeof a === 'string') throw new Error(`no answer from the front (${a})`);
  return a;
}

const errorOf = (a: RawAnswer) => (JSON.parse(a.body) as { error: { message: string; type: string } }).error;

describe('requests that never complete', () => {
  it('a body shorter than its Content-Length gets 408 within the bound', async () => {
    const { url, port, stillServes } = await frontWithEngine({}, { requestTimeoutMs: 1000 });
    const a = answered(await rawExchange(url, { head: chatHead(port, 200), body: hi().slice(0, 20), timeoutMs: 4000 }));
    console.log(`short body: ${a.status} after ${a.elapsedMs.toFixed(0)} ms (bound 1000 ms)`);
    expect(a.status).toBe(408);
    expect(errorOf(a).message).toMatch(/1 s/);
    expect(a.elapsedMs).toBeGreaterThan(900);
    expect(a.elapsedMs).toBeLessThan(1600);
    await stillServes();
  });

  it('a body trickled byte by byte gets 408 within the bound', async () => {
    const { url, port, engine, stillServes } = await frontWithEngine({}, { requestTimeoutMs: 1000 });
    const body = hi({ max_tokens: 4 });
    const a = answered(await rawExchange(url, { head: chatHead(port, body.length), body, trickleMs: 40, timeoutMs: 4000 }));
    console.log(`trickled body: ${a.status} after ${a.elapsedMs.toFixed(0)} ms (bound 1000 ms; the whole body would take ${body.length * 40} ms)`);
    expect(a.status).toBe(408);
    expect(a.elapsedMs).toBeLessThan(1600);
    expect(engine.received).toHaveLength(0);
    await stillServes();
  });

  it('headers that never end get 408 within the headers bound', async () => {
    const { url, port, stillServes } = await frontWithEngine({}, { headersTimeoutMs: 500, requestTimeoutMs: 1000 });
    const a = answered(await rawExchange(url, { head: `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: a`, unfinishedHead: true, timeoutMs: 4000 }));
    console.log(`unfinished headers: ${a.status} after ${a.elapsedMs.toFixed(0)} ms (bound 500 ms)`);
    expect(a.status).toBe(408);
    expect(errorOf(a).type).toBe('invalid_request_error');
    expect(a.elapsedMs).toBeLessThan(1200);
    await stillServes();
  });
});

describe('a full queue', () => {
  it('is answered 429 with Retry-After before the body is read', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const { url, port, engine, post, stillServes } = await frontWithEngine({ hold: () => held }, { maxQueued: 1 });
    const running = post(hi());
    const waiting = post(hi());
    await until(() => engine.jobs.length === 1, 3000, 'the first request to reach the engine');
    await new Promise((r) => setTimeout(r, 100));
    // Headers announcing 1 MB (under the body limit), and no body at all: the answer cannot wait for it.
    const a = answered(await rawExchange(url, { head: chatHead(port, 1_000_000), timeoutMs: 2000 }));
    expect(a.status).toBe(429);
    expect(Number(a.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(errorOf(a).message).toMatch(/too many requests/);
    expect(a.elapsedMs).toBeLessThan(500);
    release();
    expect((await running).status).toBe(200);
    expect((await waiting).status).toBe(200);
    await stillServes();
  });

  it('the openai convention: 429 also for a request arriving with its body', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const { engine, post, stillServes } = await frontWithEngine({ hold: () => held }, { maxQueued: 1 });
    const two = [post(hi()), post(hi())];
    await until(() => engine.jobs.length === 1, 3000, 'the first request to reach the engine');
    await new Promise((r) => setTimeout(r, 100));
    const res = await post(hi());
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    release();
    expect((await Promise.all(two)).map((r) => r.status)).toEqual([200, 200]);
    await stillServes();
  });
});

describe('connections', () => {
  it('are capped: over maxConnections, a connection is closed at once', async () => {
    const { url, port, stillServes } = await frontWithEngine({}, { maxConnections: 2 });
    const open = (): Promise<Socket> => new Promise((r) => { const s = connect(port, '127.0.0.1', () => r(s)); s.on('error', () => undefined); });
    const held = [await open(), await open()];
    for (const s of held) s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n`);
    await new Promise((r) => setTimeout(r, 100));
    const third = await open();
    const closed = await new Promise<boolean>((r) => { third.on('close', () => r(true)); setTimeout(() => r(false), 1000); });
    expect(closed).toBe(true);
    for (const s of held) s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    await stillServes();
  });
});

describe('the upstream call to the engine', () => {
  it('has explicit timeouts: no idle or headers cap, a generous overall generation bound', () => {
    const limits = apiFrontLimits({ engineUrl: 'http://127.0.0.1:8081', modelName: 'tiny' });
    expect(limits.engine).toEqual({ headersTimeoutMs: null, idleTimeoutMs: null, connectTimeoutMs: 10_000, generationTimeoutMs: 30 * 60_000 });
    expect(limits).toMatchObject({ requestTimeoutMs: 30_000, headersTimeoutMs: 10_000, maxConnections: 64, maxQueued: 16, maxBodyBytes: 1 << 20 });
    expect(apiFrontLimits({ engineUrl: 'x', modelName: 'tiny', generationTimeoutMs: 5000 }).engine.generationTimeoutMs).toBe(5000);
  });

  it('stops a non-streamed generation at the configured bound: 504 and the engine told', async () => {
    const { engine, post, stillServes } = await frontWithEngine({ tokenEveryMs: 20, tokens: 1000 }, { generationTimeoutMs: 500 });
    const start = performance.now();
    const res = await post(hi(), AbortSignal.timeout(4000));
    const took = performance.now() - start;
    expect(res.status).toBe(504);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/0\.5 s/);
    expect(took).toBeLessThan(1500);
    await until(() => engine.jobs[0]?.abortedAt !== undefined, 1000, 'the engine to see the abort');
    await stillServes();
  });

  it('ends a streamed generation at the configured bound with finish_reason length and [DONE]', async () => {
    const { engine, post, stillServes } = await frontWithEngine({ tokenEveryMs: 20, tokens: 1000 }, { generationTimeoutMs: 500 });
    const res = await post(hi({ stream: true }), AbortSignal.timeout(4000));
    const events = (await res.text()).split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe('data: [DONE]');
    expect(JSON.parse(events.at(-2)?.slice(6) ?? '{}').choices[0].finish_reason).toBe('length');
    await until(() => engine.jobs[0]?.abortedAt !== undefined, 1000, 'the engine to see the abort');
    expect(engine.jobs[0]?.produced).toBeLessThan(100);
    await stillServes();
  });
});

describe('prompts and the context', () => {
  const words = (n: number) => Array.from({ length: n }, (_, i) => `w${i}`).join(' ');

  it('refuses a prompt over the context with 400 naming the limit, counted by the engine\'s /tokenize', async () => {
    const { engine, post, stillServes } = await frontWithEngine({ tokenize: true }, { contextLength: 50 });
    const res = await post(JSON.stringify({ messages: [{ role: 'user', content: words(60) }] }));
    expect(res.status).toBe(400);
    const err = ((await res.json()) as { error: { message: string; code: string; type: string } }).error;
    expect(err.message).toMatch(/50 tokens/);
    expect(err.message).toMatch(/6\d tokens/);
    expect(err).toMatchObject({ type: 'invalid_request_error', code: 'context_length_exceeded' });
    expect(engine.received).toHaveLength(0);
    expect(engine.auxiliary).toContain('/tokenize');
    await stillServes();
  });

  it('caps max_tokens at what the context has left after the prompt', async () => {
    const { engine, post } = await frontWithEngine({ tokenize: true }, { contextLength: 50 });
    expect((await post(JSON.stringify({ messages: [{ role: 'user', content: words(10) }], max_tokens: 100_000 }))).status).toBe(200);
    expect((await post(JSON.stringify({ messages: [{ role: 'user', content: words(10) }] }))).status).toBe(200);
    expect((await post(JSON.stringify({ messages: [{ role: 'user', content: words(10) }], max_tokens: 7 }))).status).toBe(200);
    // The fake template makes "<user> w0 … w9\n<assistant>": 12 tokens.
    expect(engine.received.map((r) => r.max_tokens)).toEqual([38, 38, 7]);
  });

  it('without /tokenize (dllama-api), falls back to a bytes bound it names, and caps max_tokens at the context', async () => {
    const { engine, post, stillServes } = await frontWithEngine({ tokenize: false }, { contextLength: 50 });
    const res = await post(JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(900) }] }));
    expect(res.status).toBe(400);
    const err = ((await res.json()) as { error: { message: string } }).error;
    expect(err.message).toMatch(/50 tokens/);
    expect(err.message).toMatch(/800 bytes/);
    expect(engine.received).toHaveLength(0);
    expect((await post(hi({ max_tokens: 100_000 }))).status).toBe(200);
    expect(engine.received.at(-1)?.max_tokens).toBe(50);
    // /tokenize answered 404 once: it is not asked again.
    const asked = engine.auxiliary.length;
    await stillServes();
    expect(engine.auxiliary.length).toBe(asked);
  });
});
