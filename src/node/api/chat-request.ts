/**
 * Validation of OpenAI chat completion requests. The engine behind the API front must never
 * see a malformed body (dllama's API process aborted on one), so everything is checked here
 * and answered with an OpenAI-style 400.
 */

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** The engine behind the front: llama-server takes more of OpenAI's fields than dllama-api. */
export type EngineKind = 'llama.cpp' | 'dllama';

export interface ChatRequest {
  model?: string;
  messages: ChatMessage[];
  stream: boolean;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string | string[];
  presence_penalty?: number;
  frequency_penalty?: number;
  logit_bias?: Record<string, number>;
  response_format?: { type: 'json_object' } | { type: 'json_schema'; json_schema: Record<string, unknown> };
  /** stream_options.include_usage: the stream ends with a usage chunk. */
  include_usage: boolean;
}

export interface ApiError {
  status: number;
  message: string;
  /** OpenAI's types, plus engine_unavailable; 'requests' is OpenAI's for a 429 (code rate_limit_exceeded). */
  type: 'invalid_request_error' | 'authentication_error' | 'server_error' | 'engine_unavailable' | 'requests';
  param?: string;
  code?: string;
}

/** 'developer' is OpenAI's newer name for 'system'. */
const ROLES = ['system', 'developer', 'user', 'assistant'];
const KNOWN = new Set(['model', 'messages', 'stream', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'seed', 'stop', 'n', 'user', 'stream_options', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'response_format']);
const FORMATS = ['text', 'json_object', 'json_schema'];

const bad = (message: string, param?: string): ApiError => ({ status: 400, message, type: 'invalid_request_error', param, code: param ? 'invalid_value' : undefined });
const unsupported = (param: string, what: string, engine: EngineKind): ApiError => ({ status: 400, message: `${what} is not supported by the ${engine} engine`, type: 'invalid_request_error', param, code: 'unsupported_parameter' });
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function number(body: Record<string, unknown>, key: string, min: number, max: number, integer = false): number | ApiError | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) return bad(`'${key}' must be ${integer ? 'an integer' : 'a number'}`, key);
  if (v < min || v > max) return bad(`'${key}' must be between ${min} and ${max}`, key);
  return v;
}

/** A message's content: a string, or text parts (joined with newlines); any other part is refused by its type. */
function content(v: unknown, at: string): string | ApiError {
  if (typeof v === 'string') return v;
  if (!Array.isArray(v)) return bad(`'${at}' must be a string or an array of text parts`, at);
  const texts: string[] = [];
  for (const [j, part] of v.entries()) {
    const p = `${at}[${j}]`;
    if (!isObject(part) || typeof part.type !== 'string') return bad(`'${p}' must be an object with a 'type'`, p);
    if (part.type !== 'text') return bad(`'${p}' has type '${part.type}', which is not supported: the model reads text parts only`, p);
    if (typeof part.text !== 'string') return bad(`'${p}.text' must be a string`, p);
    texts.push(part.text);
  }
  return texts.join('\n');
}

export function parseChatRequest(body: unknown, engine: EngineKind = 'llama.cpp'): ChatRequest | ApiError {
  if (!isObject(body)) return bad('the request body must be a JSON object');
  const b = body;
  const unknown = Object.keys(b).filter((k) => !KNOWN.has(k));
  if (unknown.length) return bad(`Unrecognized request argument supplied: ${unknown.join(', ')}`, unknown[0]);
  if (b.model !== undefined && b.model !== null && typeof b.model !== 'string') return bad("'model' must be a string", 'model');
  if (!Array.isArray(b.messages) || b.messages.length === 0) return bad("'messages' must be a non-empty array", 'messages');
  const messages: ChatMessage[] = [];
  for (const [i, m] of b.messages.entries()) {
    if (!isObject(m)) return bad(`'messages[${i}]' must be an object`, `messages[${i}]`);
    const { role, content: raw, name, ...rest } = m;
    if (Object.keys(rest).length) return bad(`'messages[${i}]' has unknown fields: ${Object.keys(rest).join(', ')}`, `messages[${i}]`);
    if (typeof role !== 'string' || !ROLES.includes(role)) return bad(`'messages[${i}].role' must be one of ${ROLES.join(', ')}`, `messages[${i}].role`);
    if (name !== undefined && name !== null && typeof name !== 'string') return bad(`'messages[${i}].name' must be a string`, `messages[${i}].name`);
    const text = content(raw, `messages[${i}].content`);
    if (typeof text !== 'string') return text;
    messages.push({ role: role === 'developer' ? 'system' : (role as ChatMessage['role']), content: text });
  }
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean') return bad("'stream' must be a boolean", 'stream');
  const stream = b.stream === true;
  if (b.n !== undefined && b.n !== null && b.n !== 1) return bad("'n' must be 1: the engine produces one choice", 'n');
  if (b.user !== undefined && b.user !== null && typeof b.user !== 'string') return bad("'user' must be a string", 'user');
  const maxTokens = number(b, b.max_completion_tokens !== undefined ? 'max_completion_tokens' : 'max_tokens', 1, 1 << 20, true);
  const temperature = number(b, 'temperature', 0, 2);
  const topP = number(b, 'top_p', 0, 1);
  const seed = number(b, 'seed', 0, 2 ** 32 - 1, true);
  const presence = number(b, 'presence_penalty', -2, 2);
  const frequency = number(b, 'frequency_penalty', -2, 2);
  for (const v of [maxTokens, temperature, topP, seed, presence, frequency]) if (typeof v === 'object') return v;
  const stop = b.stop;
  if (stop !== undefined && stop !== null && typeof stop !== 'string' && !(Array.isArray(stop) && stop.length <= 4 && stop.every((s) => typeof s === 'string'))) {
    return bad("'stop' must be a string or an array of up to 4 strings", 'stop');
  }
  // Penalties of 0 are OpenAI's defaults (LangChain sends them): no engine needs them.
  const penalties: Pick<ChatRequest, 'presence_penalty' | 'frequency_penalty'> = {};
  for (const [key, v] of [['presence_penalty', presence], ['frequency_penalty', frequency]] as const) {
    if (typeof v !== 'number' || v === 0) continue;
    if (engine === 'dllama') return unsupported(key, `'${key}'`, engine);
    penalties[key] = v;
  }
  let logitBias: Record<string, number> | undefined;
  if (b.logit_bias !== undefined && b.logit_bias !== null) {
    const lb = b.logit_bias;
    if (!isObject(lb) || !Object.entries(lb).every(([k, v]) => /^\d+$/.test(k) && typeof v === 'number' && v >= -100 && v <= 100)) {
      return bad("'logit_bias' must map token ids to numbers between -100 and 100", 'logit_bias');
    }
    if (Object.keys(lb).length) {
      if (engine === 'dllama') return unsupported('logit_bias', "'logit_bias'", engine);
      logitBias = lb as Record<string, number>;
    }
  }
  let responseFormat: ChatRequest['response_format'];
  if (b.response_format !== undefined && b.response_format !== null) {
    const rf = b.response_format;
    if (!isObject(rf) || typeof rf.type !== 'string' || !FORMATS.includes(rf.type)) return bad(`'response_format.type' must be one of ${FORMATS.join(', ')}`, 'response_format');
    if (rf.type === 'json_schema' && (!isObject(rf.json_schema) || (rf.json_schema.schema !== undefined && !isObject(rf.json_schema.schema)))) {
      return bad("'response_format.json_schema' must be an object, with 'schema' an object", 'response_format');
    }
    if (rf.type !== 'text') {
      if (engine === 'dllama') return unsupported('response_format', `'response_format' ${rf.type}`, engine);
      responseFormat = rf.type === 'json_object' ? { type: 'json_object' } : { type: 'json_schema', json_schema: rf.json_schema as Record<string, unknown> };
    }
  }
  let includeUsage = false;
  if (b.stream_options !== undefined && b.stream_options !== null) {
    const so = b.stream_options;
    if (!isObject(so)) return bad("'stream_options' must be an object", 'stream_options');
    if (so.include_usage !== undefined && so.include_usage !== null && typeof so.include_usage !== 'boolean') return bad("'stream_options.include_usage' must be a boolean", 'stream_options');
    if (!stream) return bad("'stream_options' is only allowed with 'stream': true", 'stream_options');
    includeUsage = so.include_usage === true;
  }
  return {
    model: (b.model ?? undefined) as string | undefined,
    messages,
    stream,
    max_tokens: maxTokens as number | undefined,
    temperature: temperature as number | undefined,
    top_p: topP as number | undefined,
    seed: seed as number | undefined,
    stop: (stop ?? undefined) as ChatRequest['stop'],
    ...penalties,
    logit_bias: logitBias,
    response_format: responseFormat,
    include_usage: includeUsage,
  };
}

export const isApiError = (v: unknown): v is ApiError => typeof v === 'object' && v !== null && 'status' in v && 'type' in v;

export function errorBody(e: ApiError): string {
  return JSON.stringify({ error: { message: e.message, type: e.type, param: e.param ?? null, code: e.code ?? null } });
}

/** Engines may end with an empty or missing finish_reason; strict clients then retry forever. */
export function fixFinishReason(reason: unknown, hitLimit = false): 'stop' | 'length' {
  if (reason === 'length' || (hitLimit && reason !== 'stop')) return 'length';
  return 'stop';
}
