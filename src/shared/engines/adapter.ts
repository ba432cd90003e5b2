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
  /** The engine's version (engine.version in node.json), when the image knows it: flags differ between versions. */
  version?: string;
  /** A server-wide sampling temperature, for an engine that ignores a request's (dllama). */
  temperature?: number;
}

export interface WorkerLaunch {
  bindAddress: string;
  port: number;
  threads: number;
  version?: string;
}

export interface LaunchLine {
  command: string;
  args: string[];
  /** The folder of the program's own shared libraries (a runtime that carries them), searched first. */
  libraryDir?: string;
}

export type EngineName = 'llama.cpp' | 'dllama';

export interface EngineAdapter {
  name: EngineName;
  /** The port workers listen on by default. */
  workerPort: number;
  /** Ports of this engine that only cluster members may reach (the firewall adds the root's private API port). */
  firewallPorts: number[];
  /** How many of `available` nodes (root included) the engine can run with after a failover. */
  usableNodes(available: number): number;
  /** Problems with a cluster shape (e.g. dllama needs a power of two), empty when it works. */
  checkCluster(nodes: number, opts: { kvHeads?: number }): string[];
  root(launch: RootLaunch): LaunchLine;
  worker(launch: WorkerLaunch): LaunchLine;
  /** Where the root answers once the model is loaded. */
  readinessPath: string;
  /** Versions whose launch lines the adapter knows, newest last; empty: any (the distribution's package). */
  knownVersions: readonly string[];
}

// Kept here for the modules that still import it from the adapter.
