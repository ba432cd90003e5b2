import { describe, expect, it } from 'vitest';
import { DEMO_CHAT_TEMPLATE, DEMO_SENTENCE, demoGguf, demoVocabulary, sentencePieces } from '../../../../src/host/model/demo-gguf.js';
import { prng, tinyVocabulary } from '../../../../src/host/model/tiny-gguf.js';
import { readGguf } from './gguf-read.js';
import { greedy, llamaForward } from './llama-reference.js';

const EOS = 2;
const model = readGguf(demoGguf());
const vocab = demoVocabulary();
const id = (piece: string) => vocab.tokens.indexOf(piece);
const answer = sentencePieces(DEMO_SENTENCE).map(id);

/** What Debian's llama-server (b11669) feeds the model for the chat message "Hello, cluster": chatml, ending in "assistant\n". */
const CHAT_PROMPT = [1, 329, 306, 278, 324, 13, 75, 264, 271, 271, 274, 326, 288, 271, 280, 278, 279, 324, 330, 259, 13, 329, 286, 278, 278, 268, 278, 279, 260, 273, 279, 13];

describe('demo GGUF model', () => {
  it('splits its sentence into SentencePiece pieces, each once', () => {
    expect(sentencePieces(DEMO_SENTENCE)).toEqual(['Hello', '▁from', '▁the', '▁pi', '-', 'image', '▁cluster', '.']);
    expect(sentencePieces('Pi says hi!')).toEqual(['Pi', '▁says', '▁hi', '!']);
    expect(() => sentencePieces('One cat and a cat')).toThrow(/" cat" twice/);
    for (const bad of [' Hello', 'Hello  there', 'Hello ', 'Grüße', '']) expect(() => sentencePieces(bad), bad).toThrow(/printable ASCII/);
  });

  it('is a small GGUF v3 llama model: the tiny vocabulary plus chatml and the sentence pieces, a chatml template', () => {
    const buf = demoGguf();
    expect(buf.length).toBeLessThan(1024 * 1024);
    expect(model.magic).toBe('GGUF');
    expect(model.version).toBe(3);
    expect(model.meta['general.architecture']).toBe('llama');
    expect(model.meta['llama.block_count']).toBe(4);
    expect(model.meta['tokenizer.chat_template']).toBe(DEMO_CHAT_TEMPLATE);
    const tokens = model.meta['tokenizer.ggml.tokens'] as string[];
    expect(tokens).toEqual(vocab.tokens);
    expect(tokens.slice(0, tinyVocabulary().tokens.length)).toEqual(tinyVocabulary().tokens);
    expect(tokens).toEqual(expect.arrayContaining(['<|im_start|>', '<|im_end|>', ...sentencePieces(DEMO_SENTENCE)]));
    expect(new Set(tokens).size).toBe(tokens.length);
    expect((model.meta['tokenizer.ggml.token_type'] as number[])[id('<|im_end|>')]).toBe(3);
    expect(model.infos.find((t) => t.name === 'output.weight')?.dims).toEqual([64, tokens.length]);
    const last = model.infos.at(-1);
    expect(buf.length).toBe(model.dataStart + (last?.offset ?? 0) + Math.ceil(((last?.dims ?? []).reduce((a, b) => a * b, 1) * 4) / 32) * 32);
  });

  it('is deterministic: same options, same bytes; another seed or sentence, other bytes', () => {
    expect(demoGguf().equals(demoGguf())).toBe(true);
    expect(demoGguf({ seed: 7, layers: 2 }).equals(demoGguf({ seed: 7, layers: 2 }))).toBe(true);
    expect(demoGguf({ seed: 7 }).equals(demoGguf({ seed: 8 }))).toBe(false);
    expect(demoGguf({ sentence: 'Pi says hi!' }).equals(demoGguf())).toBe(false);
  });

  it('answers the chat prompt llama-server sends with the sentence, then EOS (llama forward pass restated)', () => {
    expect(greedy(model, CHAT_PROMPT, 20)).toEqual([...answer, EOS]);
  });

  it('answers the sentence after any prompt that does not end inside it, by a clear margin', () => {
    const random = prng(3);
    for (let trial = 0; trial < 8; trial++) {
      const prompt = [1, ...Array.from({ length: 1 + Math.floor(random() * 12) }, () => Math.floor(random() * vocab.tokens.length))];
      if (answer.includes(prompt.at(-1) as number)) prompt.push(13);
      const out = greedy(model, prompt, 20);
      expect(out, String(prompt)).toEqual([...answer, EOS]);
      for (let i = 0; i < out.length; i++) {
        const logits = [...llamaForward(model, [...prompt, ...out.slice(0, i)])].sort((a, b) => b - a);
        expect((logits[0] as number) - (logits[1] as number)).toBeGreaterThan(10);
      }
    }
  });

  it('does real work in every layer: without them the logits and the runner-up tokens differ', () => {
    let moved = 0;
    let runnerUpChanged = 0;
    for (let i = 0; i <= answer.length; i++) {
      const context = [...CHAT_PROMPT, ...answer.slice(0, i)];
      const withLayers = llamaForward(model, context);
      const without = llamaForward(model, context, { skipLayers: true });
      moved = Math.max(moved, ...withLayers.map((v, k) => Math.abs(v - (without[k] as number))));
      const runnerUp = (l: Float64Array) => [...l.keys()].sort((a, b) => (l[b] as number) - (l[a] as number))[1];
      if (runnerUp(withLayers) !== runnerUp(without)) runnerUpChanged++;
    }
    expect(moved).toBeGreaterThan(1);
    expect(runnerUpChanged).toBeGreaterThan(answer.length / 2);
  });

  it('keeps its answer and margin in other shapes (the weights scale with them)', () => {
    for (const shape of [{ layers: 1 }, { layers: 12, kvHeads: 2 }, { embedding: 128, feedForward: 256, heads: 8 }, { embedding: 32, feedForward: 64, layers: 2, seed: 5 }]) {
      const m = readGguf(demoGguf(shape));
      const out = greedy(m, CHAT_PROMPT, 20);
      expect(out, JSON.stringify(shape)).toEqual([...answer, EOS]);
      const logits = [...llamaForward(m, [...CHAT_PROMPT, ...answer.slice(0, 3)])].sort((a, b) => b - a);
      expect((logits[0] as number) - (logits[1] as number), JSON.stringify(shape)).toBeGreaterThan(10);
    }
  });

  it('says another sentence when asked to', () => {
    const other = readGguf(demoGguf({ sentence: 'Pi says hi!' }));
    const v = demoVocabulary('Pi says hi!');
    expect(greedy(other, [1, 13], 10)).toEqual([...['Pi', '▁says', '▁hi', '!'].map((p) => v.tokens.indexOf(p)), EOS]);
    expect(() => demoGguf({ embedding: 8 })).toThrow(/at least 18/);
  });
});
