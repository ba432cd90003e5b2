import { describe, expect, it } from 'vitest';
import { tinyGguf, tinyVocabulary } from '../../../../src/host/model/tiny-gguf.js';
import { readGguf } from './gguf-read.js';

describe('tiny GGUF model', () => {
  it('is a GGUF v3 llama model with a complete vocabulary and every tensor', () => {
    const buf = tinyGguf();
    const h = readGguf(buf);
    expect(h.magic).toBe('GGUF');
    expect(h.version).toBe(3);
    expect(h.meta['general.architecture']).toBe('llama');
    expect(h.meta['llama.block_count']).toBe(2);
    const tokens = h.meta['tokenizer.ggml.tokens'] as string[];
    expect(tokens).toHaveLength(tinyVocabulary().tokens.length);
    expect(tokens.filter((t) => /^<0x[0-9A-F]{2}>$/.test(t))).toHaveLength(256);
    expect(new Set(tokens).size).toBe(tokens.length);
    expect(h.infos.map((t) => t.name)).toEqual(expect.arrayContaining(['token_embd.weight', 'blk.1.ffn_down.weight', 'output_norm.weight', 'output.weight']));
    expect(h.infos.find((t) => t.name === 'token_embd.weight')?.dims).toEqual([64, tokens.length]);
    const last = h.infos.at(-1);
    expect(buf.length).toBe(h.dataStart + (last?.offset ?? 0) + Math.ceil(((last?.dims ?? []).reduce((a, b) => a * b, 1) * 4) / 32) * 32);
  });

  it('is deterministic: same seed, same bytes; another seed, other weights', () => {
    expect(tinyGguf({ seed: 7 }).equals(tinyGguf({ seed: 7 }))).toBe(true);
    expect(tinyGguf({ seed: 7 }).equals(tinyGguf({ seed: 8 }))).toBe(false);
  });
});
