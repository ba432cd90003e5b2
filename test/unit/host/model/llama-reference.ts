import type { GgufFile } from './gguf-read.js';

/**
 * A plain re-statement of llama.cpp's llama forward pass (RMSNorm, RoPE in its normal mode,
 * causal multi-head attention with grouped KV heads, SwiGLU, residual adds) in float64, for a
 * GGUF of F32 tensors. Slow and simple: enough to check what a tiny model does, not bit for
 * bit what llama.cpp computes.
 */
export function llamaForward(model: GgufFile, tokens: number[], opts: { skipLayers?: boolean } = {}): Float64Array {
  const nVocab = (model.meta['tokenizer.ggml.tokens'] as string[]).length;
  const eps = model.meta['llama.attention.layer_norm_rms_epsilon'] as number;
  return matvec(model.tensor('output.weight'), rmsNorm(llamaHidden(model, tokens, opts), model.tensor('output_norm.weight'), eps), nVocab);
}

/** out[i] = Σ_k w[i·n + k] x[k]: GGUF's [n, rows] matrix times x. */
function matvec(w: Float32Array, x: Float64Array, rows: number): Float64Array {
  const n = x.length;
  const out = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += (w[i * n + k] as number) * (x[k] as number);
    out[i] = s;
  }
  return out;
}

function rmsNorm(x: Float64Array, g: Float32Array, eps: number): Float64Array {
  const ms = x.reduce((a, v) => a + v * v, 0) / x.length;
  const r = 1 / Math.sqrt(ms + eps);
  return x.map((v, i) => v * r * (g[i] as number));
}

/** The residual stream at the last position after every layer (or none, with skipLayers): what the output norm and head read. */
export function llamaHidden(model: GgufFile, tokens: number[], opts: { skipLayers?: boolean } = {}): Float64Array {
  const m = model.meta;
  const d = m['llama.embedding_length'] as number;
  const nLayers = m['llama.block_count'] as number;
  const ff = m['llama.feed_forward_length'] as number;
  const nHead = m['llama.attention.head_count'] as number;
  const nKv = m['llama.attention.head_count_kv'] as number;
  const eps = m['llama.attention.layer_norm_rms_epsilon'] as number;
  const base = (m['llama.rope.freq_base'] as number | undefined) ?? 10000;
  const hd = d / nHead;
  const rope = (x: Float64Array, heads: number, pos: number): void => {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < hd; i += 2) {
        const theta = pos * base ** (-i / hd);
        const [a, b] = [x[h * hd + i] as number, x[h * hd + i + 1] as number];
        x[h * hd + i] = a * Math.cos(theta) - b * Math.sin(theta);
        x[h * hd + i + 1] = a * Math.sin(theta) + b * Math.cos(theta);
      }
    }
  };

  const embd = model.tensor('token_embd.weight');
  let xs = tokens.map((t) => Float64Array.from(embd.subarray(t * d, (t + 1) * d)));
  for (let l = 0; l < (opts.skipLayers ? 0 : nLayers); l++) {
    const t = (name: string) => model.tensor(`blk.${l}.${name}.weight`);
    const [wq, wk, wv, wo] = [t('attn_q'), t('attn_k'), t('attn_v'), t('attn_output')];
    const normed = xs.map((x) => rmsNorm(x, t('attn_norm'), eps));
    const q = normed.map((x, pos) => {
      const v = matvec(wq, x, d);
      rope(v, nHead, pos);
      return v;
    });
    const k = normed.map((x, pos) => {
      const v = matvec(wk, x, hd * nKv);
      rope(v, nKv, pos);
      return v;
    });
    const v = normed.map((x) => matvec(wv, x, hd * nKv));
    xs = xs.map((x, pos) => {
      const merged = new Float64Array(d);
      for (let h = 0; h < nHead; h++) {
        const kvh = Math.floor(h / (nHead / nKv));
        const scores = Array.from({ length: pos + 1 }, (_, j) => {
          let s = 0;
          for (let i = 0; i < hd; i++) s += (q[pos]?.[h * hd + i] as number) * (k[j]?.[kvh * hd + i] as number);
          return s / Math.sqrt(hd);
        });
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const sum = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= pos; j++) for (let i = 0; i < hd; i++) merged[h * hd + i] = (merged[h * hd + i] as number) + ((e[j] as number) / sum) * (v[j]?.[kvh * hd + i] as number);
      }
      const attn = matvec(wo, merged, d);
      const h1 = x.map((val, i) => val + (attn[i] as number));
      const n2 = rmsNorm(h1, t('ffn_norm'), eps);
      const gate = matvec(t('ffn_gate'), n2, ff);
      const up = matvec(t('ffn_up'), n2, ff);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * (up[i] as number));
      const down = matvec(t('ffn_down'), act, d);
      return h1.map((val, i) => val + (down[i] as number));
    });
  }
  return xs.at(-1) as Float64Array;
}

/** Greedy decoding with the reference forward pass, up to `max` tokens or the EOS. */
export function greedy(model: GgufFile, prompt: number[], max: number, opts: { skipLayers?: boolean } = {}): number[] {
  const eos = model.meta['tokenizer.ggml.eos_token_id'] as number;
  const out: number[] = [];
  while (out.length < max) {
    const logits = llamaForward(model, [...prompt, ...out], opts);
    const next = logits.indexOf(Math.max(...logits));
    out.push(next);
    if (next === eos) break;
  }
  return out;
}
