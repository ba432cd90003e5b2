import type { EngineName } from '../engines/adapter.js';
import { RUNTIME_INFO } from '../node-paths.js';

/**
 * What a runtime version's folder holds (its RUNTIME_INFO file): written by the build for the
 * image's first runtime and by staging for an OTA bundle, read by the agent to launch the
 * engine with the flags of that very version.
 */
export interface RuntimeInfo {
  engine: EngineName;
  version: string;
  /** Each role's program, relative to the folder. */
  entry: { root: string; worker: string };
}

export function parseRuntimeInfo(text: string, where: string): RuntimeInfo {
  const info = JSON.parse(text) as Partial<RuntimeInfo>;
  if ((info.engine !== 'dllama' && info.engine !== 'llama.cpp') || typeof info.version !== 'string' || typeof info.entry?.root !== 'string' || typeof info.entry.worker !== 'string') {
    throw new Error(`${where}/${RUNTIME_INFO} does not describe a runtime (engine, version, entry)`);
  }
  return info as RuntimeInfo;
}
