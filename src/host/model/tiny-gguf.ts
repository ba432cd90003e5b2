/**
 * A tiny deterministic llama-architecture model in GGUF (v3), for tests and for trying a
 * cluster without downloading weights: a few layers, a small SentencePiece-style vocabulary
 * with byte fallback, F32 weights from a seeded generator. Same seed, same bytes. Its text is
 * noise; `demo-gguf.ts` builds on the same writer a model that answers one English sentence.
 */

const GGUF_MAGIC = 0x46554747; // "GGUF", little-endian
const ALIGNMENT = 32;
enum ValueType { UINT32 = 4, INT32 = 5, FLOAT32 = 6, STRING = 8, ARRAY = 9 }
const GGML_TYPE_F32 = 0;

export interface TinyModelOptions {
  seed?: number;
  layers?: number;
  embedding?: number;
  heads?: number;
  kvHeads?: number;
  feedForward?: number;
  contextLength?: number;
  name?: string;
}

/** mulberry32: small, fast and the same everywhere. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Writer {
  private chunks: Buffer[] = [];
  size = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  pad(to: number): void {
    const n = (to - (this.size % to)) % to;
    if (n) this.push(Buffer.alloc(n));
  }
  result(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export type Meta = [string, 'u32', number] | [string, 'f32', number] | [string, 'str', string] | [string, 'str[]', string[]] | [string, 'f32[]', number[]] | [string, 'i32[]', number[]];

function writeMeta(w: Writer, [key, kind, value]: Meta): void {
  w.str(key);
  switch (kind) {
    case 'u32': w.u32(ValueType.UINT32); w.u32(value); break;
    case 'f32': w.u32(ValueType.FLOAT32); w.f32(value); break;
    case 'str': w.u32(ValueType.STRING); w.str(value); break;
    case 'str[]': w.u32(ValueType.ARRAY); w.u32(ValueType.STRING); w.u64(value.length); value.forEach((s) => w.str(s)); break;
    case 'f32[]': w.u32(ValueType.ARRAY); w.u32(ValueType.FLOAT32); w.u64(value.length); value.forEach((v) => w.f32(v)); break;
    case 'i32[]': w.u32(ValueType.ARRAY); w.u32(ValueType.INT32); w.u64(value.length); value.forEach((v) => w.i32(v)); break;
  }
}

/** <unk>, <s>, </s>, the 256 byte tokens, then word pieces: enough for any text through byte fallback. */
export function tinyVocabulary(): { tokens: string[]; scores: number[]; types: number[] } {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3]; // unknown, control, control
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6); // byte
  }
  const letters = 'abcdefghijklmnopqrstuvwxyz'.split('');
  // Every piece once: llama.cpp refuses a vocabulary with duplicates.
  const pieces = [...new Set(['▁', ...letters, ...letters.map((c) => `▁${c}`), '▁the', '▁is', '▁of', '▁and', '▁to', '▁in', '▁hello', '▁world', '▁pi', '▁cluster', 'ing', 'ed', 'er', '.', ',', '!', '?'])];
  for (const p of pieces) {
    tokens.push(p);
    types.push(1); // normal
  }
  // SentencePiece scores: longer pieces first.
  const scores = tokens.map((t, i) => (types[i] === 1 ? -i / 1000 + [...t].length : 0));
  return { tokens, scores, types };
}

export function tinyGguf(options: TinyModelOptions = {}): Buffer {
  const o = { seed: 42, layers: 2, embedding: 64, heads: 4, kvHeads: 4, feedForward: 128, contextLength: 256, name: 'pi-image-tiny', ...options };
  if (o.embedding % o.heads) throw new Error('embedding must be a multiple of heads');
  const headDim = o.embedding / o.heads;
  const kvDim = headDim * o.kvHeads;
  const vocab = tinyVocabulary();
  const nVocab = vocab.tokens.length;
  const random = prng(o.seed);

  const tensors: F32Tensor[] = [];
  const weights = (name: string, dims: number[], scale: number) => {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = (random() * 2 - 1) * scale;
    tensors.push({ name, dims, data });
  };
  const ones = (name: string, n: number) => tensors.push({ name, dims: [n], data: new Float32Array(n).fill(1) });

  const s = 1 / Math.sqrt(o.embedding);
  weights('token_embd.weight', [o.embedding, nVocab], 0.5);
  for (let l = 0; l < o.layers; l++) {
    ones(`blk.${l}.attn_norm.weight`, o.embedding);
    weights(`blk.${l}.attn_q.weight`, [o.embedding, o.embedding], s);
    weights(`blk.${l}.attn_k.weight`, [o.embedding, kvDim], s);
    weights(`blk.${l}.attn_v.weight`, [o.embedding, kvDim], s);
    weights(`blk.${l}.attn_output.weight`, [o.embedding, o.embedding], s);
    ones(`blk.${l}.ffn_norm.weight`, o.embedding);
    weights(`blk.${l}.ffn_gate.weight`, [o.embedding, o.feedForward], s);
    weights(`blk.${l}.ffn_up.weight`, [o.embedding, o.feedForward], s);
    weights(`blk.${l}.ffn_down.weight`, [o.feedForward, o.embedding], 1 / Math.sqrt(o.feedForward));
  }
  ones('output_norm.weight', o.embedding);
  weights('output.weight', [o.embedding, nVocab], s * 4);

  const meta = llamaMetadata(o, vocab, 2);

  return writeGguf(meta, tensors);
}

/** One F32 tensor: `dims` in GGUF order (the first is the contiguous one, e.g. [in, out] for a weight matrix). */
/** The metadata llama.cpp reads for a llama-architecture model with this shape, vocabulary and EOS token. */
export function llamaMetadata(
  o: { name: string; contextLength: number; embedding: number; layers: number; feedForward: number; heads: number; kvHeads: number },
  vocab: { tokens: string[]; scores: number[]; types: number[] },
  eos: number,
): Meta[] {
  return [
    ['general.architecture', 'str', 'llama'],
    ['general.name', 'str', o.name],
    ['general.alignment', 'u32', ALIGNMENT],
    ['llama.context_length', 'u32', o.contextLength],
    ['llama.embedding_length', 'u32', o.embedding],
    ['llama.block_count', 'u32', o.layers],
    ['llama.feed_forward_length', 'u32', o.feedForward],
    ['llama.attention.head_count', 'u32', o.heads],
    ['llama.attention.head_count_kv', 'u32', o.kvHeads],
    ['llama.rope.dimension_count', 'u32', o.embedding / o.heads],
    ['llama.attention.layer_norm_rms_epsilon', 'f32', 1e-5],
    ['tokenizer.ggml.model', 'str', 'llama'],
    ['tokenizer.ggml.tokens', 'str[]', vocab.tokens],
    ['tokenizer.ggml.scores', 'f32[]', vocab.scores],
    ['tokenizer.ggml.token_type', 'i32[]', vocab.types],
    ['tokenizer.ggml.unknown_token_id', 'u32', 0],
    ['tokenizer.ggml.bos_token_id', 'u32', 1],
    ['tokenizer.ggml.eos_token_id', 'u32', eos],
  ];
}

export interface F32Tensor {
  name: string;
  dims: number[];
  data: Float32Array;
}

/** GGUF v3: header, metadata, tensor infos, then every tensor's F32 data, each aligned. */
export function writeGguf(meta: Meta[], tensors: F32Tensor[]): Buffer {
  const w = new Writer();
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(tensors.length);
  w.u64(meta.length);
  meta.forEach((m) => writeMeta(w, m));
  let offset = 0;
  for (const t of tensors) {
    w.str(t.name);
    w.u32(t.dims.length);
    t.dims.forEach((d) => w.u64(d));
    w.u32(GGML_TYPE_F32);
    w.u64(offset);
    offset += Math.ceil((t.data.length * 4) / ALIGNMENT) * ALIGNMENT;
  }
  w.pad(ALIGNMENT);
  for (const t of tensors) {
    w.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    w.pad(ALIGNMENT);
  }
  return w.result();
}
