import type { EngineName } from '../engines/adapter.js';
import { MODEL_INFO, RUNTIME_INFO } from '../node-paths.js';
import { isLibraryPath } from './manifest.js';

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
  /** Where the programs' own shared libraries are, relative to the folder (the manifest's `libraryPath`). */
  libraryPath?: string;
}

/** What a model version's folder holds (its MODEL_INFO file), written the same two ways: the files the engine loads. */
export interface ModelInfo {
  engine: EngineName;
  version: string;
  /** The weights, relative to the folder. */
  file: string;
  /** dllama's tokenizer, relative to the folder. */
  tokenizer?: string;
}

export function parseRuntimeInfo(text: string, where: string): RuntimeInfo {
  const info = JSON.parse(text) as Partial<RuntimeInfo>;
  if ((info.engine !== 'dllama' && info.engine !== 'llama.cpp') || typeof info.version !== 'string' || typeof info.entry?.root !== 'string' || typeof info.entry.worker !== 'string' || (info.libraryPath !== undefined && !isLibraryPath(info.libraryPath))) {
    throw new Error(`${where}/${RUNTIME_INFO} does not describe a runtime (engine, version, entry, libraryPath)`);
  }
  return info as RuntimeInfo;
}

export function parseModelInfo(text: string, where: string): ModelInfo {
  const info = JSON.parse(text) as Partial<ModelInfo>;
  if ((info.engine !== 'dllama' && info.engine !== 'llama.cpp') || typeof info.version !== 'string' || typeof info.file !== 'string' || (info.tokenizer !== undefined && typeof info.tokenizer !== 'string')) {
    throw new Error(`${where}/${MODEL_INFO} does not describe a model (engine, version, file)`);
  }
  return info as ModelInfo;
}

/** A runtime bundle's folder description: its engine, version, entry points and library folder, as the manifest names them. */
export function runtimeInfoOf(m: { engine: EngineName; version: string; entry?: RuntimeInfo['entry']; libraryPath?: string }): RuntimeInfo {
  if (!m.entry) throw new Error(`runtime bundle ${m.version} names no entry points`);
  return { engine: m.engine, version: m.version, entry: m.entry, ...(m.libraryPath !== undefined ? { libraryPath: m.libraryPath } : {}) };
}

/** A model bundle's files as the folder's description names them: the weights, and dllama's tokenizer (`model pack` names them so). */
export function modelInfoOf(m: { engine: EngineName; version: string; files: readonly { path: string }[] }): ModelInfo {
  const file = m.files.find((f) => /\.(gguf|m)$/.test(f.path))?.path;
  if (!file) throw new Error(`model bundle ${m.version} holds no .gguf or .m file`);
  const tokenizer = m.files.find((f) => f.path.endsWith('.t'))?.path;
  return { engine: m.engine, version: m.version, file, ...(tokenizer ? { tokenizer } : {}) };
}

/** A version string from a file's name, as manifests accept them (`model pack`'s and the image's default model version). */
export const versionFromFileName = (name: string) => name.replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9.+~_-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64) || 'model';
