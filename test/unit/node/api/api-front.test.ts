import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiFront } from '../../../../src/node/api/api-front.js';
import { MALFORMED_REQUESTS } from '../../../helpers/malformed-requests.js';

/**
 * A stand-in for the engine's HTTP API with distributed-llama's quirks: an empty
 * finish_reason, and it dies (like dllama's SIGABRT) on a body it cannot parse. It records
 * what reached it.
 */
function fakeEngine(opts: { delayMs?: number; omitDone?: boolean } = {}) {
  const received: unknown[] = [];
  let alive = true;
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', async () => {
      let body: { stream?: boolean; messages?: { content: string }[] };
      try {
        body = JSON.parse(raw);
      } catch {
        alive = false; // what dllama-api did on malformed JSON
        res.destroy();
        return;
      }
      received.push(body);
      if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
      const words = ['Hello', ' from', ' the', ' engine'];
      if (body.stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const w of words) res.write(`data: ${JSON.stringify({ id: 'x1', object: 'chat.completion.chunk', model: '/var/lib/pi-image/model/tiny.gguf', choices: [{ index: 0, delta: { content: w }, finish_reason: '' }] })}\n\n`);
        if (!opts.omitDone) res.write('data: [DONE]\n\n');
        res.end();
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'x1', object: 'chat.completion', created: 1, model: '/var/lib/pi-image/model/tiny.gguf', choices: [{ index: 0, message: { role: 'assistant', content: words.join('') }, finish_reason: '' }], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } }));
      }
    });
  });
  return { server, received, alive: () => alive };
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('API front', () => {
  const engine = fakeEngine();
  let front: Server;
  let url: string;

  beforeAll(async () => {
    const engineUrl = await listen(engine.server);
    front = createApiFront({ engineUrl, modelName: 'tiny', maxBodyBytes: 64 * 1024, health: () => ({ role: 'root', workers: 2 }) });
    url = await listen(front);
  });
  afterAll(() => {
    front.close();
    engine.server.close();
  });

  const post = (body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
    fetch(`${url}/v1/chat/completions`, { method: 'POST', headers, body });
  const good = JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, temperature: 0 });

  it('always sets finish_reason (the engine sent an empty one)', async () => {
    const res = await post(good);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { finish_reason: string; message: { content: string } }[] };
    expect(body.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: 'Hello from the engine' } });
  });

  it('streams, ending with finish_reason and [DONE]', async () => {
    const res = await post(JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream: true }));
    const events = (await res.text()).split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { choices: { finish_reason: string | null; delta: { content?: string } }[] });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello from the engine');
    expect(chunks.slice(0, -1).every((c) => c.choices[0]?.finish_reason === null)).toBe(true);
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop');
  });

  it('works with the official openai client, streamed and not', async () => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const plain = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }] });
    expect(plain.choices[0]?.finish_reason).toBe('stop');
    expect(plain.model).toBe('tiny');
    const stream = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], stream: true });
    let text = '';
    let reason: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      reason = chunk.choices[0]?.finish_reason ?? reason;
      expect(chunk.model).toBe('tiny');
    }
    expect(text).toBe('Hello from the engine');
    expect(reason).toBe('stop');
    expect((await client.models.list()).data.map((m) => m.id)).toEqual(['tiny']);
  });

  it('answers 20 malformed requests with 4xx and OpenAI-style errors; none reaches the engine; a good request still works', async () => {
    const before = engine.received.length;
    const cases = MALFORMED_REQUESTS;
    expect(cases).toHaveLength(20);
    for (const [body, headers] of cases) {
      const res = await post(body, headers);
      expect(res.status, body.slice(0, 60)).toBeGreaterThanOrEqual(400);
      expect(res.status, body.slice(0, 60)).toBeLessThan(500);
      const err = (await res.json()) as { error: { message: string; type: string } };
      expect(err.error.type).toBe('invalid_request_error');
      expect(err.error.message.length).toBeGreaterThan(0);
    }
    expect(engine.received.length).toBe(before);
    expect(engine.alive()).toBe(true);
    expect((await post(good)).status).toBe(200);
  });

  it('answers an oversized body with 413', async () => {
    const res = await post(JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(70 * 1024) }] }));
    expect(res.status).toBe(413);
  });

  it('reports cluster state on /healthz', async () => {
    expect(await (await fetch(`${url}/healthz`)).json()).toMatchObject({ role: 'root', workers: 2, queue: 0 });
  });
});

describe('API front limits', () => {
  it('requires the bearer token when one is configured', async () => {
    const engine = fakeEngine();
    const front = createApiFront({ engineUrl: await listen(engine.server), modelName: 'tiny', bearerToken: 's3cret' });
    const url = await listen(front);
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] });
    expect((await fetch(`${url}/v1/chat/completions`, { method: 'POST', body })).status).toBe(401);
    expect((await fetch(`${url}/v1/chat/completions`, { method: 'POST', body, headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await fetch(`${url}/v1/chat/completions`, { method: 'POST', body, headers: { authorization: 'Bearer s3cret' } })).status).toBe(200);
    front.close();
    engine.server.close();
  });

  it('queues requests one at a time and answers 503 when the queue is full', async () => {
    const engine = fakeEngine({ delayMs: 300 });
    const front = createApiFront({ engineUrl: await listen(engine.server), modelName: 'tiny', maxQueued: 1 });
    const url = await listen(front);
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] });
    const statuses = await Promise.all([0, 1, 2].map(() => fetch(`${url}/v1/chat/completions`, { method: 'POST', body }).then((r) => r.status)));
    expect(statuses.sort()).toEqual([200, 200, 503]);
    front.close();
    engine.server.close();
  });

  it('ends a stream properly when the engine stops without finish_reason or [DONE]', async () => {
    const engine = fakeEngine({ omitDone: true });
    const front = createApiFront({ engineUrl: await listen(engine.server), modelName: 'tiny' });
    const url = await listen(front);
    const text = await (await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream: true, max_tokens: 4 }) })).text();
    const events = text.split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe('data: [DONE]');
    expect(JSON.parse(events.at(-2)?.slice(6) ?? '{}').choices[0].finish_reason).toBe('length');
    front.close();
    engine.server.close();
  });

  it('answers 503 while the engine is down, and keeps serving', async () => {
    const front = createApiFront({ engineUrl: 'http://127.0.0.1:9', modelName: 'tiny' });
    const url = await listen(front);
    const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }) });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('engine_unavailable');
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    front.close();
  });
});
