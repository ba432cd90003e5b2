import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { frontWithEngine, hi } from './front-harness.js';

/**
 * What real clients (Open WebUI, LangChain, the official SDKs) send every day: content as text
 * parts, the developer role, sampling fields, stream_options.include_usage, GET /v1/models/{id},
 * CORS for browser UIs.
 */

const sdk = (url: string) => new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
const errorOf = async (res: Response) => ((await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } }).error;

describe('with the official openai client', () => {
  it('sends array content and the developer role: the engine sees joined text and a system message', async () => {
    const { url, engine } = await frontWithEngine({});
    const answer = await sdk(url).chat.completions.create({
      model: 'tiny',
      messages: [
        { role: 'developer', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'Hello' }, { type: 'text', text: 'there' }], name: 'ann' },
      ],
    });
    expect(answer.choices[0]?.message.content).toBe('Hello from the engine');
    expect(engine.received[0]?.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hello\nthere' },
    ]);
  });

  it('refuses an image part with 400 naming its type', async () => {
    const { url, engine } = await frontWithEngine({});
    const e = await sdk(url)
      .chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }] })
      .catch((err: unknown) => err);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect((e as InstanceType<typeof OpenAI.BadRequestError>).message).toMatch(/'messages\[0\]\.content\[1\]'.*'image_url'.*not supported/);
    expect(engine.received).toHaveLength(0);
  });

  for (const streamUsage of [undefined, 'final', 'separate'] as const) {
    it(`with include_usage, ends the stream with a usage chunk with empty choices (engine usage: ${streamUsage ?? 'none, counted'})`, async () => {
      const { url } = await frontWithEngine({ streamUsage, tokenize: true });
      const stream = await sdk(url).chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'say hi now' }], stream: true, stream_options: { include_usage: true } });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);
      const last = chunks.at(-1);
      expect(last?.choices).toEqual([]);
      expect(last?.model).toBe('tiny');
      // The fake engine says 3 prompt tokens; counted, the prompt is its template's words: "<user> say hi now <assistant>".
      const prompt = streamUsage ? 3 : 5;
      expect(last?.usage).toEqual({ prompt_tokens: prompt, completion_tokens: 4, total_tokens: prompt + 4 });
      expect(chunks.slice(0, -1).every((c) => !c.usage)).toBe(true);
      expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe('stop');
      expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello from the engine');
    });
  }

  it('without include_usage, no chunk carries usage (also when the engine sends it)', async () => {
    const { url } = await frontWithEngine({ streamUsage: 'separate' });
    const stream = await sdk(url).chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((c) => !c.usage && c.choices.length === 1)).toBe(true);
  });

  it('retrieves the served model, and a missing one is NotFoundError model_not_found', async () => {
    const { url } = await frontWithEngine({}, { modelName: 'qwen2.5:0.5b' });
    const client = sdk(url);
    expect(await client.models.retrieve('qwen2.5:0.5b')).toMatchObject({ id: 'qwen2.5:0.5b', object: 'model', owned_by: 'pi-image' });
    const e = await client.models.retrieve('gpt-4o').catch((err: unknown) => err);
    expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    expect((e as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    expect((e as InstanceType<typeof OpenAI.NotFoundError>).type).toBe('invalid_request_error');
  });

  it('a chat naming another model is NotFoundError model_not_found; an omitted model is served', async () => {
    const { url, post, engine } = await frontWithEngine({});
    const e = await sdk(url).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    expect((e as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    expect(engine.received).toHaveLength(0);
    expect((await post(hi())).status).toBe(200);
  });

  it('answers to a configured alias as the model (chat, retrieve, list); other ids stay model_not_found', async () => {
    const { url, engine } = await frontWithEngine({}, { modelName: 'qwen2.5:0.5b', modelAliases: ['gpt-4o-mini'] });
    const client = sdk(url);
    const answer = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(answer.choices[0]?.message.content).toBeTruthy();
    expect(engine.received).toHaveLength(1);
    expect(await client.models.retrieve('gpt-4o-mini')).toMatchObject({ id: 'gpt-4o-mini', object: 'model' });
    expect((await client.models.list()).data.map((m) => m.id)).toEqual(['qwen2.5:0.5b', 'gpt-4o-mini']);
    const e = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }).catch((err: unknown) => err);
    expect((e as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
  });
});

describe('sampling fields', () => {
  const all = {
    presence_penalty: 0.5,
    frequency_penalty: -0.5,
    stop: ['\n\n', 'User:'],
    seed: 42,
    top_p: 0.9,
    temperature: 0.7,
    user: 'someone',
    logit_bias: { '15043': -100 },
    n: 1,
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } },
  };

  it('passes what llama-server supports to it, drops user', async () => {
    const { post, engine } = await frontWithEngine({});
    const res = await post(hi(all));
    expect(res.status).toBe(200);
    const { user: _user, n: _n, ...passed } = all;
    expect(engine.received[0]).toMatchObject({ ...passed, model: 'tiny' });
    expect(engine.received[0]).not.toHaveProperty('user');
    expect(engine.received[0]).not.toHaveProperty('n');
  });

  it('accepts the defaults real clients send (null, zero penalties, text format, empty logit_bias)', async () => {
    const { post, engine } = await frontWithEngine({}, { engine: 'dllama' });
    const res = await post(hi({ presence_penalty: 0, frequency_penalty: 0, response_format: { type: 'text' }, logit_bias: {}, n: null, stop: null, seed: null, user: 'u', stream_options: null }));
    expect(res.status).toBe(200);
    expect(Object.keys(engine.received[0] ?? {}).sort()).toEqual(['messages', 'model', 'stream']);
  });

  const refusals: [string, Record<string, unknown>, RegExp, ('llama.cpp' | 'dllama')?][] = [
    ['top_p', { top_p: 1.5 }, /'top_p' must be between 0 and 1/],
    ['presence_penalty', { presence_penalty: 3 }, /'presence_penalty' must be between -2 and 2/],
    ['frequency_penalty', { frequency_penalty: 'high' }, /'frequency_penalty' must be a number/],
    ['seed', { seed: 1.5 }, /'seed' must be an integer/],
    ['stop', { stop: ['a', 'b', 'c', 'd', 'e'] }, /'stop' must be a string or an array of up to 4 strings/],
    ['n', { n: 2 }, /'n' must be 1/],
    ['user', { user: 7 }, /'user' must be a string/],
    ['logit_bias', { logit_bias: { '1': 200 } }, /'logit_bias' must map token ids to numbers between -100 and 100/],
    ['response_format', { response_format: { type: 'xml' } }, /'response_format.type' must be one of text, json_object, json_schema/],
    ['response_format', { response_format: { type: 'json_schema' } }, /'response_format.json_schema' must be an object/],
    ['stream_options', { stream_options: { include_usage: 'yes' } }, /'stream_options.include_usage' must be a boolean/],
    ['stream_options', { stream_options: { include_usage: true } }, /'stream_options' is only allowed with 'stream': true/],
    ['messages[0].content[0]', { messages: [{ role: 'user', content: [{ type: 'text' }] }] }, /'messages\[0\]\.content\[0\]\.text' must be a string/],
    ['messages[0].content[0]', { messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: {} }] }] }, /type 'input_audio'.*not supported/],
    ['messages[0].name', { messages: [{ role: 'user', content: 'hi', name: 3 }] }, /'messages\[0\]\.name' must be a string/],
    ['response_format', { response_format: { type: 'json_object' } }, /'response_format' json_object is not supported by the dllama engine/, 'dllama'],
    ['presence_penalty', { presence_penalty: 0.5 }, /'presence_penalty' is not supported by the dllama engine/, 'dllama'],
    ['logit_bias', { logit_bias: { '1': 5 } }, /'logit_bias' is not supported by the dllama engine/, 'dllama'],
  ];
  for (const [param, extra, message, kind] of refusals) {
    it(`refuses ${JSON.stringify(extra)}${kind ? ` (${kind})` : ''} with 400 naming ${param}`, async () => {
      const { post, engine } = await frontWithEngine({}, kind ? { engine: kind } : {});
      const res = await post(hi(extra));
      expect(res.status).toBe(400);
      const e = await errorOf(res);
      expect(e.type).toBe('invalid_request_error');
      expect(e.param).toBe(param);
      expect(e.message).toMatch(message);
      expect(engine.received).toHaveLength(0);
    });
  }
});

describe('CORS', () => {
  const preflight = (url: string, origin: string) =>
    fetch(`${url}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });

  it('is off by default: no CORS headers, OPTIONS is 405', async () => {
    const { url, post } = await frontWithEngine({});
    const res = await preflight(url, 'http://webui.lan:3000');
    expect(res.status).toBe(405);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    const chat = await fetch(`${url}/v1/models`, { headers: { origin: 'http://webui.lan:3000' } });
    expect(chat.headers.get('access-control-allow-origin')).toBeNull();
    expect((await post(hi())).headers.get('access-control-allow-origin')).toBeNull();
  });

  it('answers a listed origin’s preflight (before the token) and marks its responses, errors included', async () => {
    const { url } = await frontWithEngine({}, { corsOrigins: ['http://webui.lan:3000'], bearerToken: 's3cret' });
    const res = await preflight(url, 'http://webui.lan:3000');
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('http://webui.lan:3000');
    expect(res.headers.get('access-control-allow-methods')).toBe('GET, POST, OPTIONS');
    expect(res.headers.get('access-control-allow-headers')).toBe('authorization, content-type');
    expect(res.headers.get('vary')).toMatch(/origin/i);
    const ok = await fetch(`${url}/v1/models`, { headers: { origin: 'http://webui.lan:3000', authorization: 'Bearer s3cret' } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe('http://webui.lan:3000');
    const denied = await fetch(`${url}/v1/models`, { headers: { origin: 'http://webui.lan:3000' } });
    expect(denied.status).toBe(401);
    expect(denied.headers.get('access-control-allow-origin')).toBe('http://webui.lan:3000');
    const streamed = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { origin: 'http://webui.lan:3000', authorization: 'Bearer s3cret' }, body: hi({ stream: true }) });
    expect(streamed.headers.get('access-control-allow-origin')).toBe('http://webui.lan:3000');
    await streamed.text();
  });

  it('gives an unlisted origin no Allow-Origin', async () => {
    const { url } = await frontWithEngine({}, { corsOrigins: ['http://webui.lan:3000'] });
    const res = await preflight(url, 'http://evil.example');
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect((await fetch(`${url}/v1/models`, { headers: { origin: 'http://evil.example' } })).headers.get('access-control-allow-origin')).toBeNull();
  });

  it('with * listed, allows any origin', async () => {
    const { url } = await frontWithEngine({}, { corsOrigins: ['*'] });
    expect((await preflight(url, 'http://anything.lan')).headers.get('access-control-allow-origin')).toBe('*');
    expect((await fetch(`${url}/v1/models`, { headers: { origin: 'http://anything.lan' } })).headers.get('access-control-allow-origin')).toBe('*');
  });
});

describe("dllama-api's answers, through the front (the quirks DLLAMA-FACTS lists)", () => {
  it('the official client gets index 0, chunk objects and a finish_reason: stop, or length when max_tokens cut it', async () => {
    const { url } = await frontWithEngine({ dllama: true, tokenEveryMs: 1, tokens: 50 }, { engine: 'dllama' });
    const client = sdk(url);
    const plain = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
    expect(plain.choices.map((c) => [c.index, c.finish_reason])).toEqual([[0, 'length']]);
    const whole = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 500 });
    expect(whole.choices[0]?.finish_reason).toBe('stop');
    const chunks = [];
    for await (const c of await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, stream: true })) chunks.push(c);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.choices.every((ch) => ch.index === 0))).toBe(true);
    expect(chunks.flatMap((c) => c.choices.map((ch) => ch.finish_reason)).filter(Boolean)).toEqual(['length']);
    const full = [];
    for await (const c of await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 500, stream: true })) full.push(c);
    expect(full.flatMap((c) => c.choices.map((ch) => ch.finish_reason)).filter(Boolean)).toEqual(['stop']);
  });
});
