/**
 * 20 bad chat requests: bad JSON, wrong types, unknown fields, a huge body, odd headers. Each
 * must be refused with the status and an error message naming the problem (the 413 assumes a
 * body limit under 100 KiB, as the unit test sets; the API's default is 1 MiB).
 */
export interface MalformedRequest {
  body: string;
  headers?: Record<string, string>;
  status: number;
  message: RegExp;
}

const hi = [{ role: 'user', content: 'hi' }];

export const MALFORMED_REQUESTS: MalformedRequest[] = [
  { body: '{"messages": [{"role": "user", "content": "hi"}', status: 400, message: /not valid JSON/ },
  { body: 'not json at all', status: 400, message: /not valid JSON/ },
  { body: '', status: 400, message: /not valid JSON/ },
  { body: 'null', status: 400, message: /must be a JSON object/ },
  { body: '[]', status: 400, message: /must be a JSON object/ },
  { body: '"a string"', status: 400, message: /must be a JSON object/ },
  { body: '{}', status: 400, message: /'messages' must be a non-empty array/ },
  { body: JSON.stringify({ messages: [] }), status: 400, message: /'messages' must be a non-empty array/ },
  { body: JSON.stringify({ messages: 'hi' }), status: 400, message: /'messages' must be a non-empty array/ },
  { body: JSON.stringify({ messages: [{ role: 'wizard', content: 'hi' }] }), status: 400, message: /'messages\[0\]\.role' must be one of/ },
  { body: JSON.stringify({ messages: [{ role: 'user', content: 42 }] }), status: 400, message: /'messages\[0\]\.content' must be a string/ },
  { body: JSON.stringify({ messages: [{ role: 'user' }] }), status: 400, message: /'messages\[0\]\.content' must be a string/ },
  { body: JSON.stringify({ messages: [{ role: 'user', content: 'hi', extra: 1 }] }), status: 400, message: /'messages\[0\]' has unknown fields: extra/ },
  { body: JSON.stringify({ messages: hi, stream: 'yes' }), status: 400, message: /'stream' must be a boolean/ },
  { body: JSON.stringify({ messages: hi, max_tokens: -5 }), status: 400, message: /'max_tokens' must be between/ },
  { body: JSON.stringify({ messages: hi, temperature: 'hot' }), status: 400, message: /'temperature' must be a number/ },
  { body: JSON.stringify({ messages: hi, frobnicate: true }), status: 400, message: /Unrecognized request argument supplied: frobnicate/ },
  { body: JSON.stringify({ messages: hi, n: 3 }), status: 400, message: /'n' must be 1/ },
  { body: JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(100 * 1024) }] }), status: 413, message: /request body over \d+ bytes/ },
  { body: '{"messages": [{"role": "user", "content": "hi"}]}\u0000garbage', headers: { 'content-type': 'application/json', authorization: 'bearer ignored' }, status: 400, message: /not valid JSON/ },
];
