import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One chat completion the fake engine was asked for, and what became of it. */
export interface EngineJob {
  body: { stream?: boolean; max_tokens?: number; messages?: { role: string; content: string }[]; [field: string]: unknown };
  startedAt: number;
  /** performance.now() when the front closed the connection before the answer was complete. */
  abortedAt?: number;
  finishedAt?: number;
  /** Tokens produced before it finished or was stopped. */
  produced: number;
}

export interface FakeEngineOptions {
  /** Waits this long before answering at all (headers included). */
  delayMs?: number;
  omitDone?: boolean;
  /** A slow engine: one token every `tokenEveryMs` ms, streamed as it comes or sent at the end. */
  tokenEveryMs?: number;
  /** Tokens a slow generation has (default 1000; `max_tokens` stops it earlier). */
  tokens?: number;
  /** Serves llama-server's POST /apply-template and POST /tokenize (one token per word). */
  tokenize?: boolean;
  /** Holds every completion until this promise settles. */
  hold?: () => Promise<void>;
  /**
   * Usage in a stream as llama-server sends it: 'final' on the chunk with finish_reason (older
   * builds, always), 'separate' as its own chunk with empty choices (newer builds, with stream_options.include_usage).
   */
  streamUsage?: 'final' | 'separate';
  /** dllama-api's answers: chunks that say chat.completion, a garbage index, `stop` when max_tokens cut it, [DONE] with no blank line. */
  dllama?: boolean;
}

/**
 * A stand-in for the engine's HTTP API with distributed-llama's quirks: an empty
 * finish_reason, and it dies (like dllama's SIGABRT) on a body it cannot parse. It records
 * what reached it, and whether the front hung up on a generation.
 */
export function fakeEngine(opts: FakeEngineOptions = {}) {
  const received: EngineJob['body'][] = [];
  const jobs: EngineJob[] = [];
  const auxiliary: string[] = [];
  let alive = true;

  const readJson = (req: IncomingMessage) =>
    new Promise<unknown>((resolve) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        try {
          resolve(JSON.parse(raw));
        } catch {
          resolve(undefined);
        }
      });
    });

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  const index = opts.dllama ? 1684301921 : 0;
  const chunk = (content: string | undefined, finish: string | null = '') =>
    `data: ${JSON.stringify({ id: 'x1', object: opts.dllama ? 'chat.completion' : 'chat.completion.chunk', model: '/var/lib/pi-image/model/tiny.gguf', choices: [{ index, delta: content === undefined ? {} : { content }, finish_reason: finish }] })}\n\n`;
  const completion = (content: string, completionTokens: number) =>
    JSON.stringify({ id: 'x1', object: 'chat.completion', created: 1, model: '/var/lib/pi-image/model/tiny.gguf', choices: [{ index, message: { role: 'assistant', content }, finish_reason: '' }], usage: { prompt_tokens: 3, completion_tokens: completionTokens, total_tokens: 3 + completionTokens } });

  const server: Server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/apply-template' || path === '/tokenize') {
      const body = (await readJson(req)) as { messages?: { role: string; content: string }[]; content?: string } | undefined;
      auxiliary.push(path);
      if (!opts.tokenize) return json(res, 404, { error: { code: 404, message: 'File Not Found', type: 'not_found_error' } });
      if (path === '/apply-template') return json(res, 200, { prompt: (body?.messages ?? []).map((m) => `<${m.role}> ${m.content}`).join('\n') + '\n<assistant>' });
      return json(res, 200, { tokens: (body?.content ?? '').split(/\s+/).filter(Boolean).map((_, i) => i) });
    }
    const body = (await readJson(req)) as EngineJob['body'] | undefined;
    if (!body) {
      alive = false; // what dllama-api did on malformed JSON
      res.destroy();
      return;
    }
    received.push(body);
    const job: EngineJob = { body, startedAt: performance.now(), produced: 0 };
    jobs.push(job);
    res.on('close', () => {
      if (!res.writableFinished) job.abortedAt = performance.now();
    });
    await opts.hold?.();
    if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
    if (res.destroyed) return;

    if (opts.tokenEveryMs) {
      const total = Math.min(opts.tokens ?? 1000, body.max_tokens ?? Infinity);
      if (body.stream) res.writeHead(200, { 'content-type': 'text/event-stream' });
      let text = '';
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          if (res.destroyed) {
            clearInterval(timer);
            return resolve();
          }
          job.produced++;
          text += ' tok';
          if (body.stream) res.write(chunk(' tok'));
          if (job.produced >= total) {
            clearInterval(timer);
            resolve();
          }
        }, opts.tokenEveryMs);
      });
      if (res.destroyed) return;
      job.finishedAt = performance.now();
      if (body.stream) res.end(opts.dllama ? `${chunk(undefined, 'stop')}data: [DONE]` : `${chunk(undefined, 'length')}data: [DONE]\n\n`);
      else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(completion(text, job.produced));
      }
      return;
    }

    const words = ['Hello', ' from', ' the', ' engine'];
    job.produced = words.length;
    job.finishedAt = performance.now();
    if (body.stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const w of words) res.write(chunk(w));
      const usage = { prompt_tokens: 3, completion_tokens: words.length, total_tokens: 3 + words.length };
      if (opts.streamUsage === 'final') res.write(`data: ${JSON.stringify({ ...JSON.parse(chunk(undefined, 'stop').slice(6)), usage, timings: { predicted_n: words.length } })}\n\n`);
      if (opts.streamUsage === 'separate') res.write(chunk(undefined, 'stop') + `data: ${JSON.stringify({ id: 'x1', object: 'chat.completion.chunk', model: 'm', choices: [], usage })}\n\n`);
      if (!opts.omitDone) res.write('data: [DONE]\n\n');
      res.end();
    } else {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(completion(words.join(''), words.length));
    }
  });

  return {
    server,
    received,
    jobs,
    /** The /apply-template and /tokenize calls, in order. */
    auxiliary,
    alive: () => alive,
    listen: () => listen(server),
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

export async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export const until = async (what: () => boolean, timeoutMs = 5000, label = 'condition'): Promise<void> => {
  const start = performance.now();
  while (!what()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};
