import { describe, expect, it } from 'vitest';
import { budgetProblem, memoryBudget } from '../../../../src/host/plan/memory-budget.js';

const GIB = 1024 ** 3;
/** An 8B Llama-3-like model in dllama's Q40: 32 layers, 8 KV heads of 128, vocab 128256 × dim 4096 (the root's F32 embedding: 2004 MiB). */
const llama8b = { fileBytes: 4 * GIB, layers: 32, kvDim: 128 * 8, rootExtraBytes: 128256 * 4096 * 4 };

describe('memory budget (hand-computed)', () => {
  it('dllama, 4 nodes, 8192 tokens on 8 GiB boards: root and worker shares', () => {
    const b = memoryBudget({ engine: 'dllama', model: llama8b, nodes: 4, contextLength: 8192, ramMib: 8192, reservedMib: 512 });
    // KV per token per node: 2 (K and V) × 32 layers × 1024 × 4 bytes (F32) / 4 nodes = 65536 B; × 8192 tokens = 512 MiB.
    expect(b.root).toEqual({ role: 'root', weightsMib: 1024 + 2004, kvCacheMib: 512, buffersMib: 32, reservedMib: 512, totalMib: 4084 });
    expect(b.worker).toEqual({ role: 'worker', weightsMib: 1024, kvCacheMib: 512, buffersMib: 32, reservedMib: 512, totalMib: 2080 });
    // (8192 − 3028 − 32 − 512) MiB / 65536 B per token.
    expect(b.maxContextThatFits).toBe(4620 * 16);
    expect(budgetProblem(b, 8192)).toBeUndefined();
  });

  it('refuses the same model with 16384 tokens on 4 GiB boards, naming the context that fits', () => {
    const b = memoryBudget({ engine: 'dllama', model: llama8b, nodes: 4, contextLength: 16384, ramMib: 4096, reservedMib: 512 });
    expect(b.root.totalMib).toBe(3028 + 1024 + 32 + 512);
    const problem = budgetProblem(b, 16384);
    expect(problem?.problem).toBe('the root would need 4596 MiB (weights 3028, KV cache 1024 for 16384 tokens, buffers 32, OS and agent 512) but the board has 4096 MiB: it would swap, and a node that swaps serves at a fraction of its speed');
    expect(problem?.hint).toMatch(/^shorten the context \(engine\.context_length 8384 fits\), add nodes/);
  });

  it('llama.cpp over RPC: F16 KV cache split by layers; a model whose weights alone do not fit says so', () => {
    // Qwen2.5-0.5B-like: 24 layers, 2 KV heads of 64 (embedding 896 / 14 heads).
    const b = memoryBudget({ engine: 'llama.cpp', model: { fileBytes: GIB, layers: 24, kvDim: 128, rootExtraBytes: 0 }, nodes: 2, contextLength: 4096, ramMib: 1024, reservedMib: 256 });
    // 2 × 24 × 128 × 2 bytes / 2 nodes = 6144 B per token; × 4096 = 24 MiB.
    expect(b.root).toEqual({ role: 'root', weightsMib: 512, kvCacheMib: 24, buffersMib: 128, reservedMib: 256, totalMib: 920 });
    expect(budgetProblem(b, 4096)).toBeUndefined();
    const huge = memoryBudget({ engine: 'llama.cpp', model: { fileBytes: 8 * GIB, layers: 24, kvDim: 128, rootExtraBytes: 0 }, nodes: 1, contextLength: 4096, ramMib: 1024, reservedMib: 256 });
    expect(huge.worker).toBeUndefined();
    expect(budgetProblem(huge, 4096)?.hint).toMatch(/^add nodes \(cluster\.size\) or use a smaller model or quantisation: the weights alone do not fit/);
  });
});
