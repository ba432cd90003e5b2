import { DLLAMA_MODEL_MAGIC } from './dllama-header.js';
import { prng } from './tiny-gguf.js';

/**
 * A tiny distributed-llama model (.m) and its tokenizer (.t), deterministic from a seed, in
 * the format dllama's converter writes (converter/writer.py, tokenizer-writer.py) and
 * src/llm.cpp / src/tokenizer.cpp read: Q40 weights (run with Q80 buffers), F32 embedding and
 * norms. Its dimensions split over 1, 2 and 4 nodes. Built so its greedy output is the same on
 * any of those node counts — the attention-output and FFN-down matrices use only the input
 * columns of node 0's share, so the other nodes' partial sums are exactly zero whatever their
 * rounding — and readable: only printable tokens have output rows.
 */
export interface TinyDllamaOptions {
  seed?: number;
  dim?: number;
  hiddenDim?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  seqLen?: number;
  /** The largest node count the output must not depend on (a power of two). */
  maxNodes?: number;
}

/** Header keys (src/llm.hpp LlmHeaderKey) and the values used here. */
const KEY = { version: 0, archType: 1, dim: 2, hiddenDim: 3, nLayers: 4, nHeads: 5, nKvHeads: 6, vocabSize: 9, seqLen: 10, hiddenAct: 11, ropeTheta: 12, weightType: 13, ropeType: 18, normEpsilon: 20 } as const;
const LLAMA_ARCH = 0xabcd00;
const SILU = 1;
const Q40 = 2;
const ROPE_LLAMA = 0;
/** convertNormEpsilon: 5 means 1e-5. */
const EPSILON_1E5 = 5;
const Q40_BLOCK = 32;
const Q40_BLOCK_BYTES = 2 + Q40_BLOCK / 2;

export const TINY_DLLAMA_DEFAULTS = { seed: 7, dim: 256, hiddenDim: 512, layers: 2, heads: 8, kvHeads: 4, seqLen: 512, maxNodes: 4 } as const;

/** The tokenizer's special tokens, after every regular one (dllama takes every id below BOS as regular). */
const SPECIALS = ['<s>', '<|im_start|>', '<|im_end|>', '</s>'] as const;
/**
 * Regular tokens beyond the 256 single bytes; the vocabulary stays a multiple of the node count.
 * `t\n` merges at the end of every chat prompt (chatml ends it with `assistant\n`): dllama-api
 * 0.16 feeds the token one past the prompt as the first generation input, which after at least
 * one merge is a stale but valid id, and otherwise uninitialised memory (a segfault).
 */
const WORDS = [' the', ' pi', ' cluster', ' node', 'Hello', ' from', ' image', ' llama', ' token', ' is', ' a', ' on', ' of', ' and', ' to', 't\n'];
const CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

export function tinyDllamaVocabulary(): { tokens: Buffer[]; bosId: number; eosIds: number[] } {
  const tokens: Buffer[] = [];
  for (let b = 0; b < 256; b++) tokens.push(Buffer.from([b]));
  for (const w of WORDS) tokens.push(Buffer.from(w));
  const regular = tokens.length;
  for (const s of SPECIALS) tokens.push(Buffer.from(s));
  return { tokens, bosId: regular, eosIds: [regular + 2, regular + 3] };
}

/** IEEE 754 half precision, round to nearest even (numpy's astype(float16)). */
export function toHalf(value: number): number {
  const f = new Float32Array([value]);
  const x = new Uint32Array(f.buffer)[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rest > mid || (rest === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** writer.py's writeQuantizedQ40Tensor: per 32 values an F16 scale and 16 bytes of 4-bit values (low nibbles first half). */
export function quantizeQ40(values: Float32Array): Buffer {
  if (values.length % Q40_BLOCK) throw new Error(`a Q40 tensor holds whole blocks of ${Q40_BLOCK} values, not ${values.length}`);
  const out = Buffer.alloc((values.length / Q40_BLOCK) * Q40_BLOCK_BYTES);
  for (let block = 0; block < values.length / Q40_BLOCK; block++) {
    const group = values.subarray(block * Q40_BLOCK, (block + 1) * Q40_BLOCK);
    let max = -Infinity;
    let min = Infinity;
    for (const v of group) {
      max = Math.max(max, v);
      min = Math.min(min, v);
    }
    const delta = Math.fround((-min > max ? min : max) / -8);
    const id = delta !== 0 ? Math.fround(1 / delta) : 0;
    const at = block * Q40_BLOCK_BYTES;
    out.writeUInt16LE(toHalf(delta), at);
    const q = Array.from(group, (v) => Math.trunc(Math.min(15, Math.max(0, Math.fround(Math.fround(v * id) + 8.5)))));
    for (let j = 0; j < Q40_BLOCK / 2; j++) out[at + 2 + j] = ((q[j] as number) & 0xf) | (((q[j + Q40_BLOCK / 2] as number) & 0xf) << 4);
  }
  return out;
}

const TOKENIZER_MAGIC = 0x567124;

/** The header both dllama files start with: magic, the header's size, then int32 (key, value) pairs. */
export function keyValueHeader(magic: number, pairs: readonly (readonly [number, number])[]): Buffer {
  const head = Buffer.alloc(8 + pairs.length * 8);
  head.writeInt32LE(magic, 0);
  head.writeInt32LE(head.length, 4);
  pairs.forEach(([k, v], i) => {
    head.writeInt32LE(k, 8 + i * 8);
    head.writeInt32LE(v, 12 + i * 8);
  });
  return head;
}

const f32 = (values: Float32Array) => Buffer.from(values.buffer, values.byteOffset, values.byteLength);

/** The .m model: header, then the tensors in the order src/llm.cpp loads them. */
export function tinyDllamaModel(options: TinyDllamaOptions = {}): Buffer {
  const o = { ...TINY_DLLAMA_DEFAULTS, ...options };
  const { tokens } = tinyDllamaVocabulary();
  const vocab = tokens.length;
  const headDim = o.dim / o.heads;
  const qDim = headDim * o.heads;
  const kvDim = headDim * o.kvHeads;
  const random = prng(o.seed);
  const uniform = (n: number, scale: number) => Float32Array.from({ length: n }, () => (random() * 2 - 1) * scale);
  /** A (rows × cols) matrix whose columns from `keepCols` on are zero: node 0's share only. */
  const matrix = (rows: number, cols: number, scale: number, keepCols = cols) => {
    const m = uniform(rows * cols, scale);
    for (let r = 0; r < rows; r++) m.fill(0, r * cols + keepCols, (r + 1) * cols);
    return m;
  };
  const ones = (n: number) => new Float32Array(n).fill(1);

  const header: [number, number][] = [
    [KEY.version, 0],
    [KEY.archType, LLAMA_ARCH],
    [KEY.dim, o.dim],
    [KEY.hiddenDim, o.hiddenDim],
    [KEY.nLayers, o.layers],
    [KEY.nHeads, o.heads],
    [KEY.nKvHeads, o.kvHeads],
    [KEY.vocabSize, vocab],
    [KEY.seqLen, o.seqLen],
    [KEY.hiddenAct, SILU],
    [KEY.ropeTheta, 10000],
    [KEY.weightType, Q40],
    [KEY.ropeType, ROPE_LLAMA],
    [KEY.normEpsilon, EPSILON_1E5],
  ];
  const head = keyValueHeader(DLLAMA_MODEL_MAGIC, header);

  const s = 1 / Math.sqrt(o.dim);
  const parts: Buffer[] = [head, f32(uniform(vocab * o.dim, 1))];
  for (let l = 0; l < o.layers; l++) {
    parts.push(
      quantizeQ40(matrix(qDim, o.dim, s)),
      quantizeQ40(matrix(kvDim, o.dim, s)),
      quantizeQ40(matrix(kvDim, o.dim, s)),
      // wo: dim × qDim, split by input columns over the nodes; only node 0's share is used.
      quantizeQ40(matrix(o.dim, qDim, s, qDim / o.maxNodes)),
      quantizeQ40(matrix(o.hiddenDim, o.dim, s)),
      // w2: dim × hidden, the same.
      quantizeQ40(matrix(o.dim, o.hiddenDim, 1 / Math.sqrt(o.hiddenDim), o.hiddenDim / o.maxNodes)),
      quantizeQ40(matrix(o.hiddenDim, o.dim, s)),
      f32(ones(o.dim)),
      f32(ones(o.dim)),
    );
  }
  parts.push(f32(ones(o.dim)));
  // The output matrix: a row per token; rows of tokens that are not printable ASCII stay zero.
  const logits = uniform(vocab * o.dim, s);
  tokens.forEach((t, id) => {
    if (!isPrintable(t)) logits.fill(0, id * o.dim, (id + 1) * o.dim);
  });
  parts.push(quantizeQ40(logits));
  return Buffer.concat(parts);
}

function isPrintable(token: Buffer): boolean {
  return token.length > 0 && [...token].every((b) => b >= 0x20 && b < 0x7f);
}

/** The .t tokenizer: tokenizer-writer.py's format with a chatml template and two end tokens. */
export function tinyDllamaTokenizer(): Buffer {
  const { tokens, bosId, eosIds } = tinyDllamaVocabulary();
  const template = Buffer.from(CHATML);
  const params: [number, number][] = [
    [3, bosId], // bos_id
    [0, 1], // version
    [1, tokens.length], // vocab_size
    [2, Math.max(...tokens.map((t) => t.length))], // max_token_length
    [7, template.length], // chat_template
    [9, eosIds.length], // n_eos_tokens
    [10, 0], // add_bos
  ];
  const head = keyValueHeader(TOKENIZER_MAGIC, params);
  const eos = Buffer.alloc(eosIds.length * 4);
  eosIds.forEach((id, i) => eos.writeInt32LE(id, i * 4));
  const entries = tokens.map((t, id) => {
    const b = Buffer.alloc(8);
    // Longer pieces merge first; single bytes last.
    b.writeFloatLE(id < 256 ? 0 : id < bosId ? t.length : 0, 0);
    b.writeUInt32LE(t.length, 4);
    return Buffer.concat([b, t]);
  });
  return Buffer.concat([head, template, eos, ...entries]);
}
