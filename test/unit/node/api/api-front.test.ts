import type { Server } from 'node:http';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiFront } from '../../../../src/node/api/api-front.js';
import { MALFORMED_REQUESTS } from '../../../helpers/malformed-requests.js';
import { fakeEngine, listen } from './fake-engine.js';

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

  it('answers 20 malformed requests with the status and an OpenAI-style error naming the problem; none reaches the engine; a good request still works', async () => {
    const before = engine.received.length;
    for (const { body, headers, status, message } of MALFORMED_REQUESTS) {
      const res = await post(body, headers);
      expect(res.status, body.slice(0, 60)).toBe(status);
      const err = (await res.json()) as { error: { message: string; type: string } };
      expect(err.error.type).toBe('invalid_request_error');
      expect(err.error.message, body.slice(0, 60)).toMatch(message);
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

  it('accepts the Bearer scheme in any case (RFC 7235)', async () => {
    const engine = fakeEngine();
    const front = createApiFront({ engineUrl: await listen(engine.server), modelName: 'tiny', bearerToken: 's3cret' });
    const url = await listen(front);
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] });
    for (const authorization of ['bearer s3cret', 'BEARER s3cret', 'BeArEr s3cret']) {
      expect((await fetch(`${url}/v1/chat/completions`, { method: 'POST', body, headers: { authorization } })).status, authorization).toBe(200);
    }
    for (const authorization of ['Bearer S3CRET', 'Basic s3cret', 'Bearers3cret', 's3cret', 'Bearer s3cret2']) {
      expect((await fetch(`${url}/v1/chat/completions`, { method: 'POST', body, headers: { authorization } })).status, authorization).toBe(401);
    }
    front.close();
    engine.server.close();
  });

  it('with a token configured, /healthz tells a caller without it only whether the cluster is ready', async () => {
    const engine = fakeEngine();
    let ready = false;
    const full = () => ({ cluster: 'lab', role: 'root', ready, workers: [{ node: 'n2', hostname: 'lab-n2', address: '10.0.0.2', boot: 'b00t' }], nodes: 3 });
    const front = createApiFront({ engineUrl: await listen(engine.server), modelName: 'tiny', bearerToken: 's3cret', health: full });
    const url = await listen(front);
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: 'Basic s3cret' }] as Record<string, string>[]) {
      const res = await fetch(`${url}/healthz`, { headers });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ ready: false });
    }
    ready = true;
    expect(await (await fetch(`${url}/healthz`)).json()).toEqual({ ready: true });
    for (const authorization of ['Bearer s3cret', 'bearer s3cret']) {
      expect(await (await fetch(`${url}/healthz`, { headers: { authorization } })).json()).toEqual({ queue: 0, ...full() });
    }
    front.close();
    engine.server.close();
  });

  it('queues requests one at a time and answers 429 when the queue is full', async () => {
    const engine = fakeEngine({ delayMs: 300 });
    const front = createApiFront({ engineUrl: await listen(engine.server), modelName: 'tiny', maxQueued: 1 });
    const url = await listen(front);
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] });
    const statuses = await Promise.all([0, 1, 2].map(() => fetch(`${url}/v1/chat/completions`, { method: 'POST', body }).then((r) => r.status)));
    expect(statuses.sort()).toEqual([200, 200, 429]);
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
