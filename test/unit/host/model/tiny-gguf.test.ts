import { describe, expect, it } from 'vitest';
import { tinyGguf, tinyVocabulary } from '../../../../src/host/model/tiny-gguf.js';

/** Reads back the GGUF header and metadata keys: enough to check the structure llama.cpp expects. */
function readHeader(buf: Buffer) {
  let at = 0;
  const u32 = () => ((at += 4), buf.readUInt32LE(at - 4));
  const u64 = () => ((at += 8), Number(buf.readBigUInt64LE(at - 8)));
  const str = () => {
    const n = u64();
    at += n;
    return buf.toString('utf8', at - n, at);
  };
  const skipValue = (type: number): unknown => {
    switch (type) {
      case 4: return u32();
      case 5: return ((at += 4), buf.readInt32LE(at - 4));
      case 6: return ((at += 4), buf.readFloatLE(at - 4));
      case 8: return str();
      case 9: {
        const inner = u32();
        const n = u64();
        return Array.from({ length: n }, () => skipValue(inner));
      }
      default: throw new Error(`type ${type}`);
    }
  };
  const magic = buf.toString('latin1', 0, 4);
  at = 4;
  const version = u32();
  const tensors = u64();
  const kvs = u64();
  const meta: Record<string, unknown> = {};
  for (let i = 0; i < kvs; i++) {
    const key = str();
    meta[key] = skipValue(u32());
  }
  const infos = Array.from({ length: tensors }, () => {
    const name = str();
    const dims = Array.from({ length: u32() }, () => u64());
    const type = u32();
    const offset = u64();
    return { name, dims, type, offset };
  });
  return { magic, version, meta, infos, dataStart: Math.ceil(at / 32) * 32 };
}

describe('tiny GGUF model', () => {
  it('is a GGUF v3 llama model with a complete vocabulary and every tensor', () => {
    const buf = tinyGguf();
    const h = readHeader(buf);
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
