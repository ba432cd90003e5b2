import { isIPv4 } from '../ipv4.js';
import type { EngineAdapter } from './adapter.js';

/**
 * What each dllama release accepts (read in its sources): v0.16.4 added `--host` to
 * `dllama-api` and `dllama worker`; v0.16.3 binds every address and exits on an unknown flag.
 */
const VERSIONS: Record<string, { host: boolean }> = {
  '0.16.3': { host: false },
  '0.16.4': { host: true },
};

/** A version's features; no version (prebuilt binaries nobody named) is taken as the newest known. */
function features(version: string | undefined): { host: boolean } {
  const known = VERSIONS[version ?? (Object.keys(VERSIONS).at(-1) as string)];
  if (!known) throw new Error(`dllama ${version} is not a version pi-image knows the flags of (${Object.keys(VERSIONS).join(', ')})`);
  return known;
}

/**
 * distributed-llama: tensor parallel, all-reduce per layer; brought by the user as prebuilt
 * binaries. Workers need no model file (the root streams weight slices at each start) and
 * form a full mesh.
 */
export const dllama: EngineAdapter = {
  name: 'dllama',
  workerPort: 9990,
  // 9998 is dllama's own default worker port: closed too, should a worker be started by hand.
  firewallPorts: [9990, 9998],
  readinessPath: '/v1/models',
  knownVersions: Object.keys(VERSIONS),
  // A power of two: 3 nodes left after a failover run as 2.
  usableNodes: (available) => (available < 1 ? 0 : 2 ** Math.floor(Math.log2(available))),
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
    // Without --host (v0.16.3) the API listens on every address: the firewall keeps its port to members.
    const host = features(l.version).host ? ['--host', '127.0.0.1'] : [];
    return {
      command: 'dllama-api',
      args: [
        ...host,
        '--port', String(l.apiPort),
        '--model', l.model,
        '--tokenizer', l.tokenizer,
        '--buffer-float-type', 'q80', // Q40 weights require q80 buffers
        '--nthreads', String(l.threads),
        '--max-seq-len', String(l.contextLength),
        ...(l.temperature !== undefined ? ['--temperature', String(l.temperature)] : []),
        ...(l.workers.length ? ['--workers', ...l.workers.map((w) => `${w.address}:${w.port}`)] : []),
      ],
    };
  },
  worker: (l) => {
    // `--host` (v0.16.4 on, as dllama-api's above) binds with inet_addr: an IPv4 literal only.
    if (!isIPv4(l.bindAddress)) throw new Error(`dllama worker --host takes an IPv4 literal, not ${JSON.stringify(l.bindAddress)}`);
    const host = features(l.version).host ? ['--host', l.bindAddress] : [];
    return { command: 'dllama', args: ['worker', ...host, '--port', String(l.port), '--nthreads', String(l.threads)] };
  },
};

