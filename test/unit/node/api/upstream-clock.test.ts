import { request, type Server } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApiFront } from '../../../../src/node/api/api-front.js';
import { fakeEngine, listen } from './fake-engine.js';

/**
 * The upstream call to the engine on a fake clock. Node's fetch (undici) gives up on an answer
 * after 300 s (headersTimeout, bodyTimeout): a non-streamed completion longer than that got a
 * 503 while the engine went on generating. The front must wait as long as its own generation
 * bound, and no longer.
 *
 * Its own file, and no fetch in it: undici arms its timer wheel once per process, with the
 * setTimeout of the moment, so a fake clock reaches it only before the first fetch.
 */

function post(url: string, body: string): Promise<{ status: number; text: string }> {
  // node:http for the test's own request: fetch would apply its 300 s caps to it too.
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function heldEngine() {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const engine = fakeEngine({ hold: () => held });
  const front: Server = createApiFront({ engineUrl: await engine.listen(), modelName: 'tiny' });
  const url = await listen(front);
  cleanups.push(() => engine.close(), () => new Promise<void>((r) => { front.closeAllConnections(); front.close(() => r()); }));
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] });
  const answer = post(url, JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }));
  for (let i = 0; i < 5000 && engine.jobs.length === 0; i++) await new Promise((r) => setImmediate(r));
  expect(engine.jobs).toHaveLength(1);
  return { engine, answer, release };
}

describe('the upstream call on a fake clock', () => {
  it('does not cut a completion at 300 s: 20 minutes of generation still answer 200', async () => {
    const { engine, answer, release } = await heldEngine();
    await vi.advanceTimersByTimeAsync(20 * 60_000);
    release();
    const res = await answer;
    expect(res.status, res.text).toBe(200);
    expect(engine.jobs[0]?.abortedAt).toBeUndefined();
  });

  it('stops it at the default generation bound, 30 minutes: 504, and the engine is told', async () => {
    const { engine, answer, release } = await heldEngine();
    await vi.advanceTimersByTimeAsync(30 * 60_000 + 1000);
    const res = await answer;
    expect(res.status, res.text).toBe(504);
    expect(res.text).toMatch(/1800 s/);
    for (let i = 0; i < 5000 && engine.jobs[0]?.abortedAt === undefined; i++) await new Promise((r) => setImmediate(r));
    expect(engine.jobs[0]?.abortedAt).toBeDefined();
    release();
  });
});
