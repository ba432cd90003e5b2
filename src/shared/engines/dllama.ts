import { isIPv4, type EngineAdapter } from './adapter.js';

/**
 * distributed-llama: tensor parallel, all-reduce per layer; brought by the user as prebuilt
 * binaries. Workers need no model file (the root streams weight slices at each start) and
 * form a full mesh.
 */
export const dllama: EngineAdapter = {
  name: 'dllama',
  workerPort: 9990,
  readinessPath: '/v1/models',
  checkCluster: (nodes, { kvHeads }) => {
    const problems: string[] = [];
    if (nodes < 1 || (nodes & (nodes - 1)) !== 0) problems.push(`dllama needs a power-of-two number of nodes (root included), not ${nodes}`);
    if (kvHeads !== undefined && nodes > kvHeads) problems.push(`dllama cannot split the model over ${nodes} nodes: it has ${kvHeads} KV heads`);
    return problems;
  },
  root: (l) => {
    const bad = l.workers.filter((w) => !isIPv4(w.address));
    if (bad.length) throw new Error(`dllama --workers takes IPv4 literals, not ${bad.map((w) => w.address).join(', ')}`);
    if (!l.tokenizer) throw new Error('dllama needs a tokenizer file (.t) next to the model');
    return {
      command: 'dllama-api',
      args: [
        '--host', '127.0.0.1',
        '--port', String(l.apiPort),
        '--model', l.model,
        '--tokenizer', l.tokenizer,
        '--buffer-float-type', 'q80', // Q40 weights require q80 buffers
        '--nthreads', String(l.threads),
        '--max-seq-len', String(l.contextLength),
        ...(l.workers.length ? ['--workers', ...l.workers.map((w) => `${w.address}:${w.port}`)] : []),
      ],
    };
  },
  worker: (l) => ({ command: 'dllama', args: ['worker', '--port', String(l.port), '--nthreads', String(l.threads)] }),
};

