/**
 * Validation of OpenAI chat completion requests. The engine behind the API front must never
 * see a malformed body (dllama's API process aborted on one), so everything is checked here
 * and answered with an OpenAI-style 400.
 */

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatRequest {
  model?: string;
  messages: ChatMessage[];
  stream: boolean;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string | string[];
}

export interface ApiError {
  status: number;
  message: string;
  type: 'invalid_request_error' | 'authentication_error' | 'server_error' | 'engine_unavailable';
  param?: string;
  code?: string;
}

const ROLES = ['system', 'user', 'assistant'];
const KNOWN = new Set(['model', 'messages', 'stream', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'seed', 'stop', 'n', 'user', 'stream_options']);

const bad = (message: string, param?: string): ApiError => ({ status: 400, message, type: 'invalid_request_error', param, code: param ? 'invalid_value' : undefined });

function number(body: Record<string, unknown>, key: string, min: number, max: number, integer = false): number | ApiError | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) return bad(`'${key}' must be ${integer ? 'an integer' : 'a number'}`, key);
  if (v < min || v > max) return bad(`'${key}' must be between ${min} and ${max}`, key);
  return v;
}

export function parseChatRequest(body: unknown): ChatRequest | ApiError {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return bad('the request body must be a JSON object');
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !KNOWN.has(k));
  if (unknown.length) return bad(`Unrecognized request argument supplied: ${unknown.join(', ')}`, unknown[0]);
  if (b.model !== undefined && typeof b.model !== 'string') return bad("'model' must be a string", 'model');
  if (!Array.isArray(b.messages) || b.messages.length === 0) return bad("'messages' must be a non-empty array", 'messages');
  const messages: ChatMessage[] = [];
  for (const [i, m] of b.messages.entries()) {
    if (typeof m !== 'object' || m === null || Array.isArray(m)) return bad(`'messages[${i}]' must be an object`, `messages[${i}]`);
    const { role, content, ...rest } = m as Record<string, unknown>;
    if (Object.keys(rest).some((k) => k !== 'name')) return bad(`'messages[${i}]' has unknown fields: ${Object.keys(rest).join(', ')}`, `messages[${i}]`);
    if (typeof role !== 'string' || !ROLES.includes(role)) return bad(`'messages[${i}].role' must be one of ${ROLES.join(', ')}`, `messages[${i}].role`);
    if (typeof content !== 'string') return bad(`'messages[${i}].content' must be a string`, `messages[${i}].content`);
    messages.push({ role: role as ChatMessage['role'], content });
  }
  if (b.stream !== undefined && typeof b.stream !== 'boolean') return bad("'stream' must be a boolean", 'stream');
  if (b.n !== undefined && b.n !== 1) return bad("'n' must be 1: the engine produces one choice", 'n');
  const maxTokens = number(b, b.max_completion_tokens !== undefined ? 'max_completion_tokens' : 'max_tokens', 1, 1 << 20, true);
  const temperature = number(b, 'temperature', 0, 2);
  const topP = number(b, 'top_p', 0, 1);
  const seed = number(b, 'seed', 0, 2 ** 32 - 1, true);
  for (const v of [maxTokens, temperature, topP, seed]) if (typeof v === 'object') return v;
  const stop = b.stop;
  if (stop !== undefined && stop !== null && typeof stop !== 'string' && !(Array.isArray(stop) && stop.length <= 4 && stop.every((s) => typeof s === 'string'))) {
    return bad("'stop' must be a string or an array of up to 4 strings", 'stop');
  }
  return {
    model: b.model as string | undefined,
    messages,
    stream: b.stream === true,
    max_tokens: maxTokens as number | undefined,
    temperature: temperature as number | undefined,
    top_p: topP as number | undefined,
    seed: seed as number | undefined,
    stop: (stop ?? undefined) as ChatRequest['stop'],
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
