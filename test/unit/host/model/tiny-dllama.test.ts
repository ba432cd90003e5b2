import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readDllamaHeader } from '../../../../src/host/model/dllama-header.js';
import { quantizeQ40, tinyDllamaModel, tinyDllamaTokenizer, tinyDllamaVocabulary, toHalf } from '../../../../src/host/model/tiny-dllama.js';

describe('tiny distributed-llama model', () => {
  it('has the header and tensor sizes computed by hand', async () => {
    const model = tinyDllamaModel();
    // dim 256, hidden 512, 2 layers, 8 heads, 4 KV heads (KV dim 128), vocab 256 bytes + 16 words + 4 specials = 276.
    const q40 = (values: number) => (values / 32) * 18;
    const header = 8 + 14 * 8;
    const embedding = 276 * 256 * 4;
    const layer = q40(256 * 256) + 2 * q40(128 * 256) + q40(256 * 256) + 3 * q40(512 * 256) + 2 * 256 * 4;
    expect(layer).toBe(333824);
    const tail = 256 * 4 + q40(276 * 256);
    expect(model.length).toBe(header + embedding + 2 * layer + tail);
    expect(model.length).toBe(991160);
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-tiny-dllama-'));
    writeFileSync(join(dir, 'tiny.m'), model);
    expect(await readDllamaHeader(join(dir, 'tiny.m'))).toEqual({ kvHeads: 4, heads: 8, layers: 2, maxSeqLen: 512, dim: 256, vocabSize: 276 });
    // Splits over 1, 2 and 4 nodes: heads, KV heads and vocab divisible, per-node widths multiples of 32.
    for (const nodes of [1, 2, 4]) expect([8 % nodes, 4 % nodes, 276 % nodes, (256 / nodes) % 32, (512 / nodes) % 32]).toEqual([0, 0, 0, 0, 0]);
    expect(tinyDllamaModel().equals(model)).toBe(true);
    expect(tinyDllamaModel({ seed: 8 }).equals(model)).toBe(false);
  });

  it('quantizes Q40 as the converter does: an F16 scale, then 4-bit values, low nibbles the first half', () => {
    expect([1, -2, 65504, 0.5, 1 / 3].map(toHalf)).toEqual([0x3c00, 0xc000, 0x7bff, 0x3800, 0x3555]);
    // Values −8…7 over 32: the scale is −8 / −8 = 1; each value v is stored as v + 8.
    const block = Float32Array.from({ length: 32 }, (_, i) => (i % 16) - 8);
    const q = quantizeQ40(block);
    expect(q.length).toBe(18);
    expect(q.readUInt16LE(0)).toBe(0x3c00);
    expect([...q.subarray(2)]).toEqual(Array.from({ length: 16 }, (_, j) => j | (j << 4)));
    expect(() => quantizeQ40(new Float32Array(31))).toThrow(/whole blocks of 32/);
  });

  it('has a tokenizer with every single byte, specials after the regular tokens, a chatml template', () => {
    const t = tinyDllamaTokenizer();
    const { tokens, bosId, eosIds } = tinyDllamaVocabulary();
    expect(t.readInt32LE(0)).toBe(0x567124);
    const headerSize = t.readInt32LE(4);
    const pairs = new Map(Array.from({ length: (headerSize - 8) / 8 }, (_, i) => [t.readInt32LE(8 + i * 8), t.readInt32LE(12 + i * 8)] as const));
    expect(Object.fromEntries(pairs)).toEqual({ 0: 1, 1: 276, 2: 12, 3: 272, 7: expect.any(Number), 9: 2, 10: 0 });
    expect(t.toString('utf8', headerSize, headerSize + (pairs.get(7) as number))).toContain('<|im_start|>');
    expect(tokens.slice(0, 256).every((b, i) => b.length === 1 && b[0] === i)).toBe(true);
    expect([bosId, ...eosIds].map((id) => tokens[id]?.toString())).toEqual(['<s>', '<|im_end|>', '</s>']);
  });
});
