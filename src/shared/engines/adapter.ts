/**
 * One interface for every inference engine: how to start the root (which owns the model and
 * serves an OpenAI-compatible API on a private port) and a worker, and how to tell the root
 * is ready. The agent supervises whatever these return.
 */
export interface Peer {
  /** IPv4 literal. */
  address: string;
  port: number;
}

export interface RootLaunch {
  model: string;
  /** dllama only: the tokenizer file next to the model. */
  tokenizer?: string;
  /** Private port of the engine's API; the API front is what the LAN sees. */
  apiPort: number;
  threads: number;
  contextLength: number;
  workers: Peer[];
}

export interface WorkerLaunch {
  bindAddress: string;
  port: number;
  threads: number;
}

export interface LaunchLine {
  command: string;
  args: string[];
}

export interface EngineAdapter {
  name: 'llama.cpp' | 'dllama';
  /** The port workers listen on by default. */
  workerPort: number;
  /** Problems with a cluster shape (e.g. dllama needs a power of two), empty when it works. */
  checkCluster(nodes: number, opts: { kvHeads?: number }): string[];
  root(launch: RootLaunch): LaunchLine;
  worker(launch: WorkerLaunch): LaunchLine;
  /** Where the root answers once the model is loaded. */
  readinessPath: string;
}

export const isIPv4 = (s: string) => /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(s);
