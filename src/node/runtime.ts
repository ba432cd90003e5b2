import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MODEL_CURRENT, MODEL_INFO, RUNTIME_CURRENT, RUNTIME_INFO } from '../shared/node-paths.js';
import { parseModelInfo, parseRuntimeInfo, type ModelInfo, type RuntimeInfo } from '../shared/ota/version-info.js';

/** The runtime `current` names, or undefined on an image whose engine comes from Debian's packages. */
export async function currentRuntime(dir = RUNTIME_CURRENT): Promise<RuntimeInfo | undefined> {
  const text = await readFile(join(dir, RUNTIME_INFO), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : parseRuntimeInfo(text, dir);
}

/** The model `current` names, or undefined on an image without one (or from before models were versioned). */
export async function currentModel(dir = MODEL_CURRENT): Promise<(ModelInfo & { path: string; tokenizerPath?: string }) | undefined> {
  const text = await readFile(join(dir, MODEL_INFO), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const info = parseModelInfo(text, dir);
  return { ...info, path: join(dir, info.file), ...(info.tokenizer ? { tokenizerPath: join(dir, info.tokenizer) } : {}) };
}
