import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { errorBody, fixFinishReason, isApiError, parseChatRequest, type ApiError, type ChatRequest } from './chat-request.js';
import { RequestQueue } from './request-queue.js';

export interface ApiFrontOptions {
  /** The engine's own OpenAI-compatible endpoint, e.g. http://127.0.0.1:8081 (never exposed). */
  engineUrl: string;
  modelName: string;
  bearerToken?: string;
  maxBodyBytes?: number;
  maxQueued?: number;
  /** Cluster state for GET /healthz (asked only when someone asks: no polling). */
  health?: () => Record<string, unknown> | Promise<Record<string, unknown>>;
}

class HttpError extends Error {
  constructor(readonly apiError: ApiError) {
    super(apiError.message);
  }
}

function send(res: ServerResponse, status: number, body: string): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const sendError = (res: ServerResponse, e: ApiError) => send(res, e.status, errorBody(e));

async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw new HttpError({ status: 413, type: 'invalid_request_error', message: `request body over ${limit} bytes` });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError({ status: 413, type: 'invalid_request_error', message: `request body over ${limit} bytes` });
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function authorized(req: IncomingMessage, token: string | undefined): boolean {
  if (!token) return true;
  const given = Buffer.from(req.headers.authorization ?? '');
  const wanted = Buffer.from(`Bearer ${token}`);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

/** What the engine is sent: only validated fields, never the client's raw body. */
function engineBody(request: ChatRequest, modelName: string): string {
  return JSON.stringify({ ...request, model: request.model ?? modelName });
}

const unavailable = (detail: string): ApiError => ({ status: 503, type: 'engine_unavailable', message: `the inference engine is not available: ${detail}` });

async function forwardPlain(res: ServerResponse, upstream: Response, request: ChatRequest, modelName: string): Promise<void> {
  const text = await upstream.text();
  let body: { model?: string; choices?: { finish_reason?: unknown }[]; usage?: { completion_tokens?: number } };
  try {
    body = JSON.parse(text);
  } catch {
    throw new HttpError({ status: 502, type: 'server_error', message: 'the engine sent an answer that is not JSON' });
  }
  const hitLimit = request.max_tokens !== undefined && (body.usage?.completion_tokens ?? 0) >= request.max_tokens;
  for (const choice of body.choices ?? []) choice.finish_reason = fixFinishReason(choice.finish_reason, hitLimit);
  body.model = modelName; // engines answer with a file path here
  send(res, 200, JSON.stringify(body));
}

/** Relays the engine's SSE stream; every stream ends with a finish_reason of stop or length, then [DONE]. */
async function forwardStream(res: ServerResponse, upstream: Response, request: ChatRequest, modelName: string): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  let finished = false;
  let pieces = 0;
  let lastId = 'chatcmpl-pi-image';
  let pending = '';
  const finish = () => {
    if (!finished) {
      const reason = request.max_tokens !== undefined && pieces >= request.max_tokens ? 'length' : 'stop';
      res.write(`data: ${JSON.stringify({ id: lastId, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: modelName, choices: [{ index: 0, delta: {}, finish_reason: reason }] })}\n\n`);
      finished = true;
    }
  };
  const handleEvent = (data: string) => {
    if (data === '[DONE]') {
      finish();
      res.write('data: [DONE]\n\n');
      return true;
    }
    let chunk: { id?: string; model?: string; choices?: { delta?: { content?: string }; finish_reason?: unknown }[] };
    try {
      chunk = JSON.parse(data);
    } catch {
      return false; // not ours to pass on
    }
    if (chunk.id) lastId = chunk.id;
    chunk.model = modelName;
    for (const choice of chunk.choices ?? []) {
      if (choice.delta?.content) pieces++;
      if (choice.finish_reason === '' || choice.finish_reason === undefined) choice.finish_reason = null;
      if (choice.finish_reason !== null) {
        choice.finish_reason = fixFinishReason(choice.finish_reason);
        finished = true;
      }
    }
    res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    return false;
  };
  let done = false;
  const decoder = new TextDecoder();
  for await (const part of upstream.body as unknown as AsyncIterable<Uint8Array>) {
    pending += decoder.decode(part, { stream: true });
    let at: number;
    while ((at = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, at).replace(/\r$/, '');
      pending = pending.slice(at + 1);
      if (line.startsWith('data:')) done = handleEvent(line.slice(5).trim()) || done;
    }
  }
  if (!done) {
    finish();
    res.write('data: [DONE]\n\n');
  }
  res.end();
}

/**
 * The root's OpenAI-compatible API: validates every request, queues them for the engine
 * (one at a time, bounded), relays answers with a proper finish_reason, and keeps the
 * engine's own port private.
 */
export function createApiFront(opts: ApiFrontOptions): Server {
  const queue = new RequestQueue(opts.maxQueued ?? 16);
  const limit = opts.maxBodyBytes ?? 1 << 20;

  const chat = async (req: IncomingMessage, res: ServerResponse) => {
    const raw = await readBody(req, limit);
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch (e) {
      throw new HttpError({ status: 400, type: 'invalid_request_error', message: `the body is not valid JSON: ${(e as Error).message}` });
    }
    const request = parseChatRequest(json);
    if (isApiError(request)) throw new HttpError(request);
    const result = await queue.run(async () => {
      let upstream: Response;
      try {
        upstream = await fetch(`${opts.engineUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: engineBody(request, opts.modelName) });
      } catch (e) {
        throw new HttpError(unavailable((e as Error).message));
      }
      if (upstream.status >= 400 && upstream.status < 500) {
        // The engine refused the request itself (e.g. a prompt longer than the context): the client's to fix.
        throw new HttpError({ status: 400, type: 'invalid_request_error', message: `the engine refused the request: ${(await upstream.text()).slice(0, 300)}` });
      }
      if (!upstream.ok) throw new HttpError({ status: 502, type: 'server_error', message: `the engine answered ${upstream.status}: ${(await upstream.text()).slice(0, 300)}` });
      if (request.stream) await forwardStream(res, upstream, request, opts.modelName);
      else await forwardPlain(res, upstream, request, opts.modelName);
    });
    if (!result) throw new HttpError({ status: 503, type: 'engine_unavailable', message: `too many requests waiting (${queue.maxWaiting}); try again shortly` });
  };

  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const handle = async () => {
      if (path === '/healthz' && req.method === 'GET') return send(res, 200, JSON.stringify({ queue: queue.depth, ...((await opts.health?.()) ?? {}) }));
      if (!authorized(req, opts.bearerToken)) throw new HttpError({ status: 401, type: 'authentication_error', message: 'missing or wrong bearer token' });
      if (path === '/v1/models' && req.method === 'GET') {
        return send(res, 200, JSON.stringify({ object: 'list', data: [{ id: opts.modelName, object: 'model', created: 0, owned_by: 'pi-image' }] }));
      }
      if (path === '/v1/chat/completions') {
        if (req.method !== 'POST') throw new HttpError({ status: 405, type: 'invalid_request_error', message: 'use POST' });
        return chat(req, res);
      }
      throw new HttpError({ status: 404, type: 'invalid_request_error', message: `no route ${req.method} ${path}` });
    };
    handle().catch((e: unknown) => {
      if (e instanceof HttpError) sendError(res, e.apiError);
      else sendError(res, { status: 500, type: 'server_error', message: (e as Error).message });
    });
  });
}
