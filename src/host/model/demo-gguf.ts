/**
 * The demo model: as small and deterministic as the tiny one (`tiny-gguf.ts`), but its greedy
 * answer to any chat prompt is one English sentence, ended by EOS, in the real llama.cpp.
 *
 * How: the next token depends only on the current one. Each piece of the sentence has its own
 * dimension of the embedding ("slot"); every other token shares slot 0. A token's embedding
 * is its slot's unit vector plus a little seeded noise in the dimensions no slot uses, and
 * the output head reads slot 0 as the sentence's first piece, slot i as piece i + 1, the last
 * slot as EOS. A chat prompt ends with the template's "assistant\n" (a token of slot 0), so
 * the answer is the whole sentence, and it stops by itself. Every layer (seeded random
 * attention and SwiGLU feed-forward weights) computes for real and adds about a quarter of
 * the residual stream's size in random directions, so a node holding layers over ggml RPC
 * does real work and the logits (the runner-up tokens, every probability) depend on it; it
 * never comes near the slot's margin of 15-20 logits, so the argmax is the sentence's. With
 * that margin llama-server's default sampling gives the same answer as greedy decoding.
 */
import { llamaMetadata, prng, tinyVocabulary, writeGguf, type F32Tensor, type Meta, type TinyModelOptions } from './tiny-gguf.js';

export const DEMO_SENTENCE = 'Hello from the pi-image cluster.';

export interface DemoModelOptions extends TinyModelOptions {
  /** ASCII words and punctuation, single spaces; no piece twice (a piece has one successor). */
  sentence?: string;
}

/** chatml, which llama.cpp knows with and without its Jinja engine. */
export const DEMO_CHAT_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const SPECIALS = ['<|im_start|>', '<|im_end|>'];
const EOS = 2;

/** The sentence as SentencePiece pieces: a word or one punctuation mark, "▁" for a space before it. */
export function sentencePieces(sentence: string): string[] {
  if (!/^[A-Za-z0-9][\x21-\x7e]*( [\x21-\x7e]+)*$/.test(sentence)) {
    throw new Error(`the demo sentence must be printable ASCII words with single spaces, starting with a letter or digit: "${sentence}"`);
  }
  const pieces = [...sentence.matchAll(/( ?)([A-Za-z0-9]+|[^A-Za-z0-9 ])/g)].map((m) => (m[1] ? '▁' : '') + m[2]);
  const repeated = pieces.find((p, i) => pieces.indexOf(p) !== i);
  if (repeated !== undefined) throw new Error(`the demo sentence has the piece "${repeated.replace('▁', ' ')}" twice: every piece may occur once`);
  return pieces;
}

/** The tiny vocabulary, chatml's two control tokens and the sentence's pieces (those it lacks), in that order. */
export function demoVocabulary(sentence = DEMO_SENTENCE): { tokens: string[]; scores: number[]; types: number[] } {
  const { tokens, types } = tinyVocabulary();
  for (const s of SPECIALS) {
    tokens.push(s);
    types.push(3); // control
  }
  for (const p of sentencePieces(sentence)) {
    if (tokens.includes(p)) continue;
    tokens.push(p);
    types.push(1);
  }
  // The tiny vocabulary's rule: longer pieces first.
  const scores = tokens.map((t, i) => (types[i] === 1 ? -i / 1000 + [...t].length : 0));
  return { tokens, scores, types };
}

/**
 * The weights' sizes, set for the default shape (embedding 64, feed-forward 128, 4 layers) and
 * scaled with it so that any shape behaves alike: the slot → next piece entries of the output
 * head (a margin of 15-20 logits over the runner-up), and the per-component size of the seeded
 * noise in the token embeddings, the output head and each layer's matrices (attention scores
 * of order 1, each layer adding about a quarter of the residual stream's size in random
 * directions, less per layer when there are more than 4).
 */
function sizes(d: number, ff: number, layers: number) {
  const e = 64 / d;
  const perLayer = Math.min(1, 2 / Math.sqrt(Math.max(layers, 1)));
  return {
    head: 3 * Math.sqrt(e),
    embedding: 0.08 * Math.sqrt(e),
    headNoise: 0.05 * Math.sqrt(e),
    qk: 0.25 * Math.sqrt(e),
    vo: 0.035 * e ** 0.75 * Math.sqrt(perLayer),
    gateUp: 0.25 * Math.sqrt(e),
    down: 0.005 * Math.sqrt((e * 128) / ff) * perLayer,
  };
}

/**
 * The demo model's GGUF bytes: same options, same bytes. A raw completion prompt (no chat
 * template) that ends in a piece of the sentence gets the rest of the sentence from there.
 */
export function demoGguf(options: DemoModelOptions = {}): Buffer {
  const o = { seed: 42, layers: 4, embedding: 64, heads: 4, kvHeads: 4, feedForward: 128, contextLength: 256, name: 'pi-image-demo', sentence: DEMO_SENTENCE, ...options };
  if (o.embedding % o.heads) throw new Error('embedding must be a multiple of heads');
  if (o.heads % o.kvHeads) throw new Error('heads must be a multiple of kvHeads');
  const headDim = o.embedding / o.heads;
  const kvDim = headDim * o.kvHeads;
  const vocab = demoVocabulary(o.sentence);
  const nVocab = vocab.tokens.length;
  const chain = sentencePieces(o.sentence).map((p) => vocab.tokens.indexOf(p));
  const slots = chain.length + 1;
  if (2 * slots > o.embedding) throw new Error(`a sentence of ${chain.length} pieces needs an embedding of at least ${2 * slots}`);
  const size = sizes(o.embedding, o.feedForward, o.layers);
  const random = prng(o.seed);
  const noise = (scale: number) => (random() * 2 - 1) * scale;

  const tensors: F32Tensor[] = [];
  const weights = (name: string, dims: number[], scale: number) => {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = noise(scale);
    tensors.push({ name, dims, data });
  };
  const ones = (name: string, n: number) => tensors.push({ name, dims: [n], data: new Float32Array(n).fill(1) });

  // Row t: the unit vector of t's slot, noise in the free dimensions.
  const embd = new Float32Array(o.embedding * nVocab);
  for (let t = 0; t < nVocab; t++) {
    const slot = chain.indexOf(t) + 1;
    embd[t * o.embedding + slot] = 1;
    for (let k = slots; k < o.embedding; k++) embd[t * o.embedding + k] = noise(size.embedding);
  }
  tensors.push({ name: 'token_embd.weight', dims: [o.embedding, nVocab], data: embd });

  for (let l = 0; l < o.layers; l++) {
    ones(`blk.${l}.attn_norm.weight`, o.embedding);
    weights(`blk.${l}.attn_q.weight`, [o.embedding, o.embedding], size.qk);
    weights(`blk.${l}.attn_k.weight`, [o.embedding, kvDim], size.qk);
    weights(`blk.${l}.attn_v.weight`, [o.embedding, kvDim], size.vo);
    weights(`blk.${l}.attn_output.weight`, [o.embedding, o.embedding], size.vo);
    ones(`blk.${l}.ffn_norm.weight`, o.embedding);
    weights(`blk.${l}.ffn_gate.weight`, [o.embedding, o.feedForward], size.gateUp);
    weights(`blk.${l}.ffn_up.weight`, [o.embedding, o.feedForward], size.gateUp);
    weights(`blk.${l}.ffn_down.weight`, [o.feedForward, o.embedding], size.down);
  }
  ones('output_norm.weight', o.embedding);

  // Row v: the logit of token v. Slot 0 → the first piece, slot i → piece i + 1, the last → EOS.
  const head = new Float32Array(o.embedding * nVocab);
  for (let i = 0; i < head.length; i++) head[i] = noise(size.headNoise);
  [...chain, EOS].forEach((next, slot) => (head[next * o.embedding + slot] = size.head));
  tensors.push({ name: 'output.weight', dims: [o.embedding, nVocab], data: head });

  const meta: Meta[] = [...llamaMetadata(o, vocab, EOS), ['tokenizer.chat_template', 'str', DEMO_CHAT_TEMPLATE]];
  return writeGguf(meta, tensors);
}
