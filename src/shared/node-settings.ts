/**
 * What the build tells the node agent (NODE_SETTINGS_PATH): the cluster it belongs to, the
 * role it was built for, its engine and model. Written by `pi-image build` from pi-image.yaml;
 * read once at agent start.
 */
export interface NodeSettings {
  cluster: { name: string; size: number; apiPort: number; discoveryPort: number; failoverGraceSeconds: number; corsOrigins: string[] };
  role: 'auto' | 'root' | 'worker';
  /** temperature: dllama's server-wide sampling temperature (dllama-api ignores a request's). */
  engine: { name: 'llama.cpp' | 'dllama'; binDir: string; contextLength: number; version?: string; temperature?: number };
  /** aliases: other ids the API answers to as this model. */
  model: { path: string; name: string; tokenizer?: string; aliases?: string[] } | null;
  user: { name: string };
  /** keepVersions: versions of each kind a node keeps after a committed update (ota.keep_versions). */
  ota?: { keepVersions: number };
  /** The engine's memory budget per role (weights, KV cache, buffers: the OS's share left out), when the build computed one. */
  engineMemoryMib?: { root: number; worker?: number };
}
