import type { Server } from 'node:http';
import { afterEach, expect } from 'vitest';
import { createApiFront, type ApiFrontOptions } from '../../../../src/node/api/api-front.js';
import { fakeEngine, listen } from './fake-engine.js';

/** A chat body saying "hi", with any extra fields. */
export const hi = (extra: Record<string, unknown> = {}) => JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], ...extra });

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The real API front before a fake engine, both closed after the test. */
export async function frontWithEngine(engineOpts: Parameters<typeof fakeEngine>[0], frontOpts: Partial<ApiFrontOptions> = {}) {
  const engine = fakeEngine(engineOpts);
  const front: Server = createApiFront({ engineUrl: await engine.listen(), modelName: 'tiny', ...frontOpts });
  const url = await listen(front);
  const port = Number(new URL(url).port);
  cleanups.push(() => engine.close(), () => new Promise<void>((r) => { front.closeAllConnections(); front.close(() => r()); }));
  const post = (body: string, signal?: AbortSignal) => fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal });
  /** A good request after the test's own: the front still serves. */
  const stillServes = async () => {
    const res = await post(hi({ max_tokens: 3 }));
    expect(res.status).toBe(200);
    expect(((await res.json()) as { choices: unknown[] }).choices).toHaveLength(1);
  };
  return { engine, front, url, port, post, stillServes };
}
