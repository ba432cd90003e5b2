import type { EngineName } from '../../shared/engines/adapter.js';

const MIB = 1024 * 1024;

/** What a model's header says about its size in memory. */
export interface ModelShape {
  /** The model file: its weights, shared out over the nodes. */
  fileBytes: number;
  layers: number;
  /** Width of one key (or value) row of the KV cache, all KV heads: head size × KV heads. */
  kvDim: number;
  /** dllama's root also holds the token embedding in F32 (vocab × dim): 0 when unknown or not kept. */
  rootExtraBytes: number;
}

export interface MemoryInputs {
  engine: EngineName;
  model: ModelShape;
  nodes: number;
  contextLength: number;
  /** The board's RAM and what its OS, the agent and the page cache's working set keep. */
  ramMib: number;
  reservedMib: number;
}

export interface NodeMemory {
  role: 'root' | 'worker';
  weightsMib: number;
  kvCacheMib: number;
  buffersMib: number;
  reservedMib: number;
  totalMib: number;
}

export interface MemoryBudget {
  ramMib: number;
  root: NodeMemory;
  /** Absent for a one-node cluster. */
  worker?: NodeMemory;
  /** The longest context that fits on every node (whole tokens), for the refusal's hint. */
  maxContextThatFits: number;
}

/** Bytes per KV-cache element: dllama keeps F32 (src/nn/nn-core.cpp, sliceKvCache), llama.cpp F16 by default. */
const KV_BYTES: Record<EngineName, number> = { dllama: 4, 'llama.cpp': 2 };
/** Activations and network buffers per node: measured 14–18 MiB for dllama's tiny model; llama.cpp's compute buffer is larger. */
const BUFFERS_MIB: Record<EngineName, number> = { dllama: 32, 'llama.cpp': 128 };

const mib = (bytes: number) => Math.ceil(bytes / MIB);

/**
 * Each node's memory need: its share of the weights, its share of the KV cache for the
 * whole context (dllama splits every layer's KV heads over the nodes; llama.cpp over RPC
 * gives each node whole layers — the same share either way), buffers, and what the OS keeps.
 * Pure: `--print-plan` shows it; the plan refuses a config whose root or worker would swap.
 */
export function memoryBudget(i: MemoryInputs): MemoryBudget {
  const kvPerToken = (2 * i.model.layers * i.model.kvDim * KV_BYTES[i.engine]) / i.nodes;
  const node = (role: NodeMemory['role'], contextLength: number): NodeMemory => {
    const weightsMib = mib(i.model.fileBytes / i.nodes + (role === 'root' ? i.model.rootExtraBytes : 0));
    const kvCacheMib = mib(kvPerToken * contextLength);
    const buffersMib = BUFFERS_MIB[i.engine];
    return { role, weightsMib, kvCacheMib, buffersMib, reservedMib: i.reservedMib, totalMib: weightsMib + kvCacheMib + buffersMib + i.reservedMib };
  };
  const root = node('root', i.contextLength);
  // The root carries the most; the context that still fits is found on it.
  const fixed = root.weightsMib + root.buffersMib + root.reservedMib;
  const maxContextThatFits = kvPerToken > 0 ? Math.max(0, Math.floor(((i.ramMib - fixed) * MIB) / kvPerToken)) : Number.MAX_SAFE_INTEGER;
  return { ramMib: i.ramMib, root, ...(i.nodes > 1 ? { worker: node('worker', i.contextLength) } : {}), maxContextThatFits };
}

/** What is wrong with a budget, or undefined when every node fits in RAM. */
export function budgetProblem(b: MemoryBudget, contextLength: number): { problem: string; hint: string } | undefined {
  const over = [b.root, b.worker].filter((n): n is NodeMemory => n !== undefined && n.totalMib > b.ramMib);
  if (!over.length) return undefined;
  const n = over[0] as NodeMemory;
  return {
    problem: `the ${n.role} would need ${n.totalMib} MiB (weights ${n.weightsMib}, KV cache ${n.kvCacheMib} for ${contextLength} tokens, buffers ${n.buffersMib}, OS and agent ${n.reservedMib}) but the board has ${b.ramMib} MiB: it would swap, and a node that swaps serves at a fraction of its speed`,
    hint:
      b.maxContextThatFits >= 64
        ? `shorten the context (engine.context_length ${Math.min(contextLength - 1, b.maxContextThatFits)} fits), add nodes (cluster.size), or use a smaller quantisation; board_ram_mib if your boards have more RAM`
        : 'add nodes (cluster.size) or use a smaller model or quantisation: the weights alone do not fit; board_ram_mib if your boards have more RAM',
  };
}
