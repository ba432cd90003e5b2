import type { EngineAdapter } from './adapter.js';

/** Debian's llama.cpp (forky/sid): llama-server on the root, the ggml RPC server on workers (layer offload). */
export const llamaCpp: EngineAdapter = {
  name: 'llama.cpp',
  workerPort: 50052,
  firewallPorts: [50052],
  readinessPath: '/health',
  knownVersions: [],
  usableNodes: (available) => available,
  checkCluster: (nodes) => (nodes < 1 ? ['a cluster needs at least one node'] : []),
  root: (l) => ({
    command: 'llama-server',
    args: [
      '--host', '127.0.0.1',
      '--port', String(l.apiPort),
      '-m', l.model,
      '-c', String(l.contextLength),
      '-t', String(l.threads),
      // -ngl moves layers to the RPC servers, which count as GPU-like devices.
      ...(l.workers.length ? ['--rpc', l.workers.map((w) => `${w.address}:${w.port}`).join(','), '-ngl', '99'] : []),
    ],
  }),
  worker: (l) => ({
    command: '/usr/libexec/aarch64-linux-gnu/llama/bin/ggml-rpc-server',
    // It binds 127.0.0.1 unless told otherwise; the firewall keeps the port to cluster members (it has no authentication).
    args: ['-H', l.bindAddress, '-p', String(l.port), '-t', String(l.threads)],
  }),
};
