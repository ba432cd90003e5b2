import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, request as httpRequest, STATUS_CODES, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorBody, fixFinishReason, isApiError, parseChatRequest, type ApiError, type ChatMessage, type ChatRequest, type EngineKind } from './chat-request.js';
import { LeftQueue, RequestQueue } from './request-queue.js';

export interface ApiFrontOptions {
  /** The engine's own OpenAI-compatible endpoint, e.g. http://127.0.0.1:8081 (never exposed). */
  engineUrl: string;
  /** The served model's id: GET /v1/models lists it, and a chat naming another model gets 404 model_not_found. */
  modelName: string;
  /** Other ids answered as the model (configured aliases); listed in /v1/models too. */
  modelAliases?: string[];
  /** Which engine serves (default llama.cpp): dllama-api takes no penalties, logit_bias or JSON response_format. */
  engine?: EngineKind;
  /**
   * Browser origins allowed to call the API (CORS), e.g. ['http://webui.lan:3000'], or ['*'].
   * Unset or empty: no CORS headers at all, and OPTIONS is answered 405.
   */
  corsOrigins?: string[];
  bearerToken?: string;
  maxBodyBytes?: number;
  /** Requests that may wait while one runs (default 16); over that, 429 before the body is read. */
  maxQueued?: number;
  /** The engine's context in tokens (the engine's launch line): longer prompts get 400, max_tokens is capped to what is left. */
  contextLength?: number;
  /** A request's body must have arrived this long after its headers, or 408 (default 30 s). */
  requestTimeoutMs?: number;
  /** A request's headers must have arrived this long after its first byte, or 408 (default 10 s). */
  headersTimeoutMs?: number;
  /** Open connections at most (default 64); more are closed at once. */
  maxConnections?: number;
  /** One generation's bound, from the engine's start on it to its last byte (default 30 min): then 504, or a stream ended with finish_reason length. */
  generationTimeoutMs?: number;
  /** The engine must accept the connection this fast (default 10 s). */
  engineConnectTimeoutMs?: number;
  /**
   * How a prompt is measured against the context: 'engine' asks the engine's POST /tokenize
   * (llama-server has it; the first 404 switches to bytes for good), 'bytes' never asks (dllama-api,
   * which has none) and bounds the prompt at BYTES_PER_TOKEN_BOUND bytes per token.
   */
  promptCount?: 'engine' | 'bytes';
  /** Cluster state for GET /healthz (asked only when someone asks: no polling). */
  health?: () => Record<string, unknown> | Promise<Record<string, unknown>>;
}

/** Every bound the front applies, as explicit values (null: none). */
export interface ApiFrontLimits {
  maxBodyBytes: number;
  maxQueued: number;
  maxConnections: number;
  requestTimeoutMs: number;
  headersTimeoutMs: number;
  contextLength: number | null;
  /** The upstream call to the engine. No headers or idle cap (fetch had 300 s of each): a slow engine is not an error, only the overall generation bound is. */
  engine: { connectTimeoutMs: number; headersTimeoutMs: number | null; idleTimeoutMs: number | null; generationTimeoutMs: number };
}

/**
 * Without the engine's tokenizer a prompt is refused only when it cannot fit whatever the
 * tokenizer: no vocabulary we ship has tokens longer than this many bytes on average over a
 * whole prompt (English is about 4 bytes a token).
 */
export const BYTES_PER_TOKEN_BOUND = 16;
/** The engine's /apply-template and /tokenize are quick: a bound for each call. */
const ASK_TIMEOUT_MS = 10_000;
/**
 * After a client's FIN, when to probe again whether it is still there (then every
 * PROBE_EVERY_MS): the second probe finds a closed client (its reset is back within a LAN's
 * round trip); the later ones, one that half-closed first and left later.
 */
const PROBE_AFTER_MS = [25, 250, 1000, 5000];
const PROBE_EVERY_MS = 10_000;

export function apiFrontLimits(opts: ApiFrontOptions): ApiFrontLimits {
  const requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
  return {
    maxBodyBytes: opts.maxBodyBytes ?? 1 << 20,
    maxQueued: opts.maxQueued ?? 16,
    maxConnections: opts.maxConnections ?? 64,
    requestTimeoutMs,
    headersTimeoutMs: opts.headersTimeoutMs ?? Math.min(10_000, requestTimeoutMs),
    contextLength: opts.contextLength ?? null,
    engine: {
      connectTimeoutMs: opts.engineConnectTimeoutMs ?? 10_000,
      headersTimeoutMs: null,
      idleTimeoutMs: null,
      generationTimeoutMs: opts.generationTimeoutMs ?? 30 * 60_000,
    },
  };
}

class HttpError extends Error {
  constructor(readonly apiError: ApiError, readonly headers: OutgoingHttpHeaders = {}) {
    super(apiError.message);
  }
}

/** The client went away: nothing to answer, and the engine is to stop. */
class ClientGone extends Error {
  constructor() {
    super('the client went away');
  }
}

class GenerationTimeout extends Error {
  constructor(readonly ms: number) {
    super(`the engine did not finish within ${seconds(ms)}`);
  }
}

const seconds = (ms: number) => `${ms / 1000} s`;

function send(res: ServerResponse, status: number, body: string, headers: OutgoingHttpHeaders = {}): void {
  if (res.destroyed || res.writableEnded) return;
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** Answers what went wrong; an answer sent before the request's body was read closes the connection, so that body is never read. */
function respondError(req: IncomingMessage, res: ServerResponse, e: unknown): void {
  if (e instanceof ClientGone || e instanceof LeftQueue) {
    res.destroy();
    return;
  }
  const apiError: ApiError = e instanceof HttpError ? e.apiError : { status: 500, type: 'server_error', message: (e as Error).message };
  send(res, apiError.status, errorBody(apiError), { ...(e instanceof HttpError ? e.headers : {}), ...(req.complete ? {} : { connection: 'close' }) });
}

const tooLarge = (limit: number) => new HttpError({ status: 413, type: 'invalid_request_error', message: `request body over ${limit} bytes` });

/** The body, whole, within `timeoutMs` of the headers (408 otherwise) and at most `limit` bytes (413). */
function readBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (settle: () => void) => {
      clearTimeout(timer);
      req.off('data', onData).off('end', onEnd).off('error', onGone).off('close', onGone);
      settle();
    };
    const timer = setTimeout(() => done(() => reject(new HttpError({ status: 408, type: 'invalid_request_error', message: `the request body did not arrive within ${seconds(timeoutMs)}` }))), timeoutMs);
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) done(() => reject(tooLarge(limit)));
      else chunks.push(chunk);
    };
    const onEnd = () => done(() => resolve(Buffer.concat(chunks).toString('utf8')));
    const onGone = () => done(() => reject(new ClientGone()));
    req.on('data', onData).once('end', onEnd).once('error', onGone).once('close', onGone);
  });
}

function authorized(req: IncomingMessage, token: string | undefined): boolean {
  if (!token) return true;
  // RFC 7235: the scheme is case-insensitive; the token is not. Hashes compare in constant time whatever the lengths.
  const given = /^bearer +(.+?) *$/i.exec(req.headers.authorization ?? '')?.[1];
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given ?? ''), digest(token)) && given !== undefined;
}

/** What the engine is sent: only validated fields, never the client's raw body (undefined ones are left out). */
function engineBody(r: ChatRequest, modelName: string, engine: EngineKind): string {
  return JSON.stringify({
    model: modelName,
    messages: r.messages,
    stream: r.stream,
    max_tokens: r.max_tokens,
    temperature: r.temperature,
    top_p: r.top_p,
    seed: r.seed,
    stop: r.stop,
    presence_penalty: r.presence_penalty,
    frequency_penalty: r.frequency_penalty,
    logit_bias: r.logit_bias,
    response_format: r.response_format,
    // Newer llama-server builds send usage in a stream only when asked.
    stream_options: r.include_usage && engine === 'llama.cpp' ? { include_usage: true } : undefined,
  });
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

const isUsage = (u: unknown): u is Usage =>
  typeof u === 'object' && u !== null && ['prompt_tokens', 'completion_tokens'].every((k) => typeof (u as Record<string, unknown>)[k] === 'number');

const modelNotFound = (model: string) =>
  new HttpError({ status: 404, type: 'invalid_request_error', code: 'model_not_found', message: `The model '${model}' does not exist: this cluster serves only its own model (GET /v1/models).` });

const unavailable = (detail: string): ApiError => ({ status: 503, type: 'engine_unavailable', message: `the inference engine is not available: ${detail}` });

/**
 * One POST to the engine over node:http (not fetch: undici caps headers and body at 300 s each,
 * and an idle engine between tokens of a long prompt is normal). A new connection each time, so
 * aborting `signal` closes it: llama-server then cancels the generation, dllama-api notices
 * at its next streamed token.
 */
function callEngine(engine: URL, path: string, body: string, signal: AbortSignal, t: ApiFrontLimits['engine']): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const req = httpRequest({
      hostname: engine.hostname.replace(/^\[|\]$/g, ''),
      port: engine.port || 80,
      path,
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    const timers: NodeJS.Timeout[] = [];
    const fail = (message: string) => () => req.destroy(new Error(message));
    const connect = setTimeout(fail(`no connection within ${seconds(t.connectTimeoutMs)}`), t.connectTimeoutMs);
    timers.push(connect);
    req.once('socket', (socket) => socket.once('connect', () => clearTimeout(connect)));
    if (t.headersTimeoutMs !== null) timers.push(setTimeout(fail(`no answer within ${seconds(t.headersTimeoutMs)}`), t.headersTimeoutMs));
    if (t.idleTimeoutMs !== null) req.setTimeout(t.idleTimeoutMs, fail(`silent for ${seconds(t.idleTimeoutMs)}`));
    const onAbort = () => req.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    req.once('response', (res) => {
      timers.forEach(clearTimeout);
      resolve(res);
    });
    req.once('error', (e) => {
      timers.forEach(clearTimeout);
      reject(signal.aborted ? signal.reason : e);
    });
    req.once('close', () => {
      timers.forEach(clearTimeout);
      signal.removeEventListener('abort', onAbort);
    });
    req.end(body);
  });
}

async function readAll(res: IncomingMessage, signal: AbortSignal): Promise<string> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of res) chunks.push(chunk as Buffer);
  } catch (e) {
    throw signal.aborted ? signal.reason : e;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Counts a prompt's tokens with the engine's own template and tokenizer (llama-server's /apply-template and /tokenize). */
class PromptCounter {
  private hasTemplate: boolean | undefined;
  private hasTokenizer: boolean | undefined;

  constructor(private readonly engine: URL, mode: 'engine' | 'bytes', private readonly connectTimeoutMs: number) {
    if (mode === 'bytes') this.hasTokenizer = false;
  }

  /** The prompt's tokens, or undefined when the engine cannot count them (no /tokenize, or it is down). */
  async tokens(messages: ChatMessage[], gone: AbortSignal): Promise<number | undefined> {
    if (this.hasTokenizer === false) return undefined;
    let prompt: string | undefined;
    if (this.hasTemplate !== false) {
      const templated = await this.ask('/apply-template', { messages }, gone);
      if (templated === 404) this.hasTemplate = false;
      else if (typeof templated === 'object' && typeof templated.prompt === 'string') prompt = templated.prompt;
    }
    const tokenized = await this.ask('/tokenize', { content: prompt ?? messages.map((m) => m.content).join('\n'), add_special: true }, gone);
    if (tokenized === 404) this.hasTokenizer = false;
    return typeof tokenized === 'object' && Array.isArray(tokenized.tokens) ? tokenized.tokens.length : undefined;
  }

  private async ask(path: string, body: unknown, gone: AbortSignal): Promise<Record<string, unknown> | 404 | undefined> {
    const ac = new AbortController();
    const onGone = () => ac.abort(new ClientGone());
    gone.addEventListener('abort', onGone, { once: true });
    const timer = setTimeout(() => ac.abort(new Error('too slow')), ASK_TIMEOUT_MS);
    try {
      const res = await callEngine(this.engine, path, JSON.stringify(body), ac.signal, { connectTimeoutMs: this.connectTimeoutMs, headersTimeoutMs: null, idleTimeoutMs: null, generationTimeoutMs: ASK_TIMEOUT_MS });
      const text = await readAll(res, ac.signal);
      if (res.statusCode === 404) return 404;
      return res.statusCode === 200 ? (JSON.parse(text) as Record<string, unknown>) : undefined;
    } catch (e) {
      if (e instanceof ClientGone) throw e;
      return undefined; // the completion itself will say what is wrong with the engine
    } finally {
      clearTimeout(timer);
      gone.removeEventListener('abort', onGone);
    }
  }
}

/**
 * Watches the client while its request is served. A client that closes its connection sends a
 * FIN — and so does one that only shut down its sending side and waits for the answer (which
 * it must get). Only a write tells them apart: a closed socket answers it with a reset. So
 * after a FIN the front probes with what HTTP allows before the answer, `100 Continue` (every
 * HTTP/1.1 client must skip 1xx responses; an HTTP/1.0 client gets none, and is trusted to be
 * waiting), or an SSE comment once a stream has started. The second probe then fails on a
 * closed socket, which closes the response: `signal` aborts.
 */
function watchClient(req: IncomingMessage, res: ServerResponse, streaming: () => boolean): { signal: AbortSignal; done: () => void } {
  const ac = new AbortController();
  const socket = req.socket;
  let timer: NodeJS.Timeout | undefined;
  let probes = 0;
  const probe = () => {
    timer = undefined;
    if (res.writableEnded || res.destroyed) return;
    if (!res.headersSent) {
      if (req.httpVersion !== '1.1') return;
      res.writeContinue();
    } else if (streaming()) res.write(':\n\n');
    else return;
    timer = setTimeout(probe, PROBE_AFTER_MS[probes++] ?? PROBE_EVERY_MS);
  };
  const onFin = () => {
    if (!timer) probe();
  };
  if (socket.readableEnded) onFin();
  else socket.once('end', onFin);
  res.once('close', () => {
    clearTimeout(timer);
    if (!res.writableFinished) ac.abort(new ClientGone());
  });
  return {
    signal: ac.signal,
    done: () => {
      clearTimeout(timer);
      socket.off('end', onFin);
    },
  };
}

function forwardPlain(res: ServerResponse, text: string, request: ChatRequest, modelName: string): void {
  let body: { model?: string; choices?: { index?: unknown; finish_reason?: unknown }[]; usage?: { completion_tokens?: number } };
  try {
    body = JSON.parse(text);
  } catch {
    throw new HttpError({ status: 502, type: 'server_error', message: 'the engine sent an answer that is not JSON' });
  }
  const hitLimit = request.max_tokens !== undefined && (body.usage?.completion_tokens ?? 0) >= request.max_tokens;
  // dllama-api sends an empty finish_reason and a garbage index.
  for (const [i, choice] of (body.choices ?? []).entries()) Object.assign(choice, { index: i, finish_reason: fixFinishReason(choice.finish_reason, hitLimit) });
  body.model = modelName; // engines answer with a file path here
  send(res, 200, JSON.stringify(body));
}

/**
 * Relays the engine's SSE stream; every stream ends with a finish_reason of stop or length, then
 * [DONE] — also one cut at the generation bound (length). With include_usage, a chunk with empty
 * choices and the usage comes just before [DONE], as OpenAI sends it: the engine's own usage
 * (llama-server puts it on its last chunk, or a chunk of its own), else counted here.
 */
async function forwardStream(res: ServerResponse, upstream: IncomingMessage, request: ChatRequest, modelName: string, signal: AbortSignal, promptTokens: () => Promise<number>, engine: EngineKind): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  let finished = false;
  let pieces = 0;
  let lastId = 'chatcmpl-pi-image';
  let engineUsage: Usage | undefined;
  let pending = '';
  const created = () => Math.floor(Date.now() / 1000);
  const finish = (cut = false) => {
    if (!finished) {
      const reason = cut || (request.max_tokens !== undefined && pieces >= request.max_tokens) ? 'length' : 'stop';
      res.write(`data: ${JSON.stringify({ id: lastId, object: 'chat.completion.chunk', created: created(), model: modelName, choices: [{ index: 0, delta: {}, finish_reason: reason }] })}\n\n`);
      finished = true;
    }
  };
  let done = false;
  const handleEvent = (data: string) => {
    if (data === '[DONE]') {
      done = true;
      return;
    }
    let chunk: { id?: string; object?: string; model?: string; usage?: unknown; choices?: { index?: unknown; delta?: { content?: string }; finish_reason?: unknown }[] };
    try {
      chunk = JSON.parse(data);
    } catch {
      return; // not ours to pass on
    }
    if (chunk.id) lastId = chunk.id;
    chunk.model = modelName;
    chunk.object = 'chat.completion.chunk'; // dllama-api says chat.completion
    // Usage goes only in the chunk of its own at the end, and only when asked for.
    if (isUsage(chunk.usage)) engineUsage = chunk.usage;
    delete chunk.usage;
    if (Array.isArray(chunk.choices) && chunk.choices.length === 0) return;
    for (const [i, choice] of (chunk.choices ?? []).entries()) {
      choice.index = i; // dllama-api's is garbage
      if (choice.delta?.content) pieces++;
      if (choice.finish_reason === '' || choice.finish_reason === undefined) choice.finish_reason = null;
      if (choice.finish_reason !== null) {
        // dllama-api says stop even when max_tokens ended the answer (one piece per token).
        const cut = engine === 'dllama' && request.max_tokens !== undefined && pieces >= request.max_tokens;
        choice.finish_reason = fixFinishReason(choice.finish_reason, cut);
        if (cut) choice.finish_reason = 'length';
        finished = true;
      }
    }
    res.write(`data: ${JSON.stringify(chunk)}\n\n`);
  };
  const decoder = new TextDecoder();
  try {
    for await (const part of upstream as AsyncIterable<Uint8Array>) {
      pending += decoder.decode(part, { stream: true });
      let at: number;
      while ((at = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, at).replace(/\r$/, '');
        pending = pending.slice(at + 1);
        if (line.startsWith('data:')) handleEvent(line.slice(5).trim());
        if (done) break;
      }
      if (done) break; // the end is sent now, not when the engine closes its side
    }
  } catch (e) {
    if (!(signal.reason instanceof GenerationTimeout)) throw signal.aborted ? signal.reason : e;
    finish(true);
  }
  finish();
  if (request.include_usage) {
    const prompt = engineUsage?.prompt_tokens ?? (await promptTokens());
    const completion = engineUsage?.completion_tokens ?? pieces;
    const usage: Usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
    res.write(`data: ${JSON.stringify({ id: lastId, object: 'chat.completion.chunk', created: created(), model: modelName, choices: [], usage })}\n\n`);
  }
  res.write('data: [DONE]\n\n');
  res.end();
}

/** Answers Node's own refusals (headers too slow or too large, bad HTTP) as OpenAI-style JSON, then closes. */
function onClientError(err: Error & { code?: string }, socket: Duplex): void {
  const pending = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || pending?.headersSent) {
    socket.destroy();
    return;
  }
  const e: ApiError =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? { status: 408, type: 'invalid_request_error', message: 'the request did not arrive in time' }
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? { status: 431, type: 'invalid_request_error', message: 'the request headers are too large' }
        : { status: 400, type: 'invalid_request_error', message: `not a valid HTTP request (${err.code ?? err.message})` };
  const body = errorBody(e);
  socket.end(`HTTP/1.1 ${e.status} ${STATUS_CODES[e.status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`, () => socket.destroy());
}

/**
 * The root's OpenAI-compatible API: validates every request, queues them for the engine
 * (one at a time, bounded: a full queue is answered before the body is read), relays answers
 * with a proper finish_reason, stops the engine when the client goes away, and keeps the
 * engine's own port private. Every bound is in `apiFrontLimits`.
 */
export function createApiFront(opts: ApiFrontOptions): Server {
  const limits = apiFrontLimits(opts);
  const queue = new RequestQueue(limits.maxQueued);
  const engine = new URL(opts.engineUrl);
  const counter = new PromptCounter(engine, opts.promptCount ?? 'engine', limits.engine.connectTimeoutMs);
  const engineKind = opts.engine ?? 'llama.cpp';
  const cors = opts.corsOrigins?.length ? opts.corsOrigins : undefined;
  const modelIds = [opts.modelName, ...(opts.modelAliases ?? [])];
  const modelObject = (id: string) => ({ id, object: 'model', created: 0, owned_by: 'pi-image' });

  /** The prompt against the context: 400 when it cannot fit, else max_tokens capped to the room left. */
  const fitToContext = async (request: ChatRequest, gone: AbortSignal, counted: (tokens: number) => void): Promise<ChatRequest> => {
    const context = limits.contextLength;
    if (context === null) return request;
    const tokens = await counter.tokens(request.messages, gone);
    if (tokens !== undefined) {
      counted(tokens);
      if (tokens >= context) {
        throw new HttpError({ status: 400, type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded', message: `This model's maximum context length is ${context} tokens, and your messages are ${tokens} tokens (counted by the engine), leaving no room for an answer. Shorten the messages.` });
      }
      const room = context - tokens;
      return { ...request, max_tokens: Math.min(request.max_tokens ?? room, room) };
    }
    const bytes = request.messages.reduce((n, m) => n + Buffer.byteLength(m.content), 0);
    const bound = context * BYTES_PER_TOKEN_BOUND;
    if (bytes > bound) {
      throw new HttpError({ status: 400, type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded', message: `This model's maximum context length is ${context} tokens, and your messages are ${bytes} bytes, over the ${bound} bytes that can fit (the engine cannot count tokens; ${BYTES_PER_TOKEN_BOUND} bytes a token at most). Shorten the messages.` });
    }
    return { ...request, max_tokens: Math.min(request.max_tokens ?? context, context) };
  };

  /** One generation on the engine, bounded by the generation timeout, stopped when the client goes. */
  const generate = async (request: ChatRequest, res: ServerResponse, gone: AbortSignal, promptTokens: () => Promise<number>): Promise<void> => {
    if (gone.aborted) throw new ClientGone();
    const ac = new AbortController();
    const onGone = () => ac.abort(new ClientGone());
    gone.addEventListener('abort', onGone, { once: true });
    const bound = setTimeout(() => ac.abort(new GenerationTimeout(limits.engine.generationTimeoutMs)), limits.engine.generationTimeoutMs);
    try {
      let upstream: IncomingMessage;
      try {
        upstream = await callEngine(engine, '/v1/chat/completions', engineBody(request, opts.modelName, engineKind), ac.signal, limits.engine);
      } catch (e) {
        if (ac.signal.aborted) throw ac.signal.reason;
        throw new HttpError(unavailable((e as Error).message));
      }
      const status = upstream.statusCode ?? 0;
      if (status >= 400 && status < 500) {
        // The engine refused the request itself (e.g. a prompt longer than the context): the client's to fix.
        throw new HttpError({ status: 400, type: 'invalid_request_error', message: `the engine refused the request: ${(await readAll(upstream, ac.signal)).slice(0, 300)}` });
      }
      if (status < 200 || status >= 300) throw new HttpError({ status: 502, type: 'server_error', message: `the engine answered ${status}: ${(await readAll(upstream, ac.signal)).slice(0, 300)}` });
      if (request.stream) await forwardStream(res, upstream, request, opts.modelName, ac.signal, promptTokens, engineKind);
      else forwardPlain(res, await readAll(upstream, ac.signal), request, opts.modelName);
    } catch (e) {
      if (e instanceof GenerationTimeout) throw new HttpError({ status: 504, type: 'server_error', message: e.message });
      throw e;
    } finally {
      clearTimeout(bound);
      gone.removeEventListener('abort', onGone);
    }
  };

  const chat = async (req: IncomingMessage, res: ServerResponse) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limits.maxBodyBytes) throw tooLarge(limits.maxBodyBytes);
    // A place in the queue before the body: a full queue is answered now, and holds no body in memory.
    const ticket = queue.admit();
    if (!ticket) {
      const wait = queue.retryAfterSeconds();
      throw new HttpError({ status: 429, type: 'requests', code: 'rate_limit_exceeded', message: `too many requests waiting (${queue.maxWaiting}); try again in ${wait} s` }, { 'retry-after': String(wait) });
    }
    let streaming = false;
    const client = watchClient(req, res, () => streaming && res.headersSent);
    client.signal.addEventListener('abort', () => ticket.release(), { once: true });
    try {
      const raw = await readBody(req, limits.maxBodyBytes, limits.requestTimeoutMs);
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch (e) {
        throw new HttpError({ status: 400, type: 'invalid_request_error', message: `the body is not valid JSON: ${(e as Error).message}` });
      }
      const parsed = parseChatRequest(json, engineKind);
      if (isApiError(parsed)) throw new HttpError(parsed);
      if (parsed.model !== undefined && !modelIds.includes(parsed.model)) throw modelNotFound(parsed.model);
      streaming = parsed.stream;
      let counted: number | undefined;
      const request = await fitToContext(parsed, client.signal, (tokens) => (counted = tokens));
      // For a stream's usage when the engine sends none: the engine's count, else about 4 bytes a token.
      const promptTokens = async () =>
        counted ?? (await counter.tokens(request.messages, client.signal)) ?? Math.ceil(request.messages.reduce((n, m) => n + Buffer.byteLength(m.content), 0) / 4);
      await ticket.run(() => generate(request, res, client.signal, promptTokens));
    } catch (e) {
      if (client.signal.aborted) throw new ClientGone();
      throw e;
    } finally {
      ticket.release();
      client.done();
    }
  };

  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      // Node's own bound on a whole request is the backstop; readBody answers first.
      requestTimeout: limits.headersTimeoutMs + limits.requestTimeoutMs,
      // How often Node checks those two (its default, 30 s, would let a 10 s bound run to 40 s).
      connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(limits.headersTimeoutMs / 5))),
    },
    (req, res) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const handle = async () => {
        if (cors) {
          const origin = req.headers.origin;
          const allowed = cors.includes('*') ? '*' : origin !== undefined && cors.includes(origin) ? origin : undefined;
          res.setHeader('vary', 'Origin');
          if (allowed) res.setHeader('access-control-allow-origin', allowed);
          if (allowed) res.setHeader('access-control-expose-headers', 'retry-after');
          if (req.method === 'OPTIONS') {
            // A preflight carries no token: answered before the check.
            res.writeHead(204, { 'access-control-allow-methods': 'GET, POST, OPTIONS', 'access-control-allow-headers': 'authorization, content-type', 'access-control-max-age': '600' });
            return void res.end();
          }
        } else if (req.method === 'OPTIONS') {
          throw new HttpError({ status: 405, type: 'invalid_request_error', message: 'OPTIONS is answered only with CORS origins configured' }, { allow: 'GET, POST' });
        }
        if (path === '/healthz' && req.method === 'GET') {
          const health = (await opts.health?.()) ?? {};
          // Without the token: only whether it serves, nothing about the nodes behind it.
          if (!authorized(req, opts.bearerToken)) return send(res, 200, JSON.stringify({ ready: typeof health.ready === 'boolean' ? health.ready : true }));
          return send(res, 200, JSON.stringify({ queue: queue.depth, ...health }));
        }
        if (!authorized(req, opts.bearerToken)) throw new HttpError({ status: 401, type: 'authentication_error', message: 'missing or wrong bearer token' });
        if (path === '/v1/models' && req.method === 'GET') return send(res, 200, JSON.stringify({ object: 'list', data: modelIds.map(modelObject) }));
        if (path.startsWith('/v1/models/') && req.method === 'GET') {
          let id: string;
          try {
            id = decodeURIComponent(path.slice('/v1/models/'.length));
          } catch {
            id = path.slice('/v1/models/'.length);
          }
          if (!modelIds.includes(id)) throw modelNotFound(id);
          return send(res, 200, JSON.stringify(modelObject(id)));
        }
        if (path === '/v1/chat/completions') {
          if (req.method !== 'POST') throw new HttpError({ status: 405, type: 'invalid_request_error', message: 'use POST' });
          return chat(req, res);
        }
        throw new HttpError({ status: 404, type: 'invalid_request_error', message: `no route ${req.method} ${path}` });
      };
      handle().catch((e: unknown) => respondError(req, res, e));
    },
  );
  server.maxConnections = limits.maxConnections;
  // A client that half-closes (FIN after its request) still gets its answer; watchClient tells it from one that left.
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  server.on('clientError', onClientError);
  return server;
}
