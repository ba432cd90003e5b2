import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RUNTIME_CURRENT, RUNTIME_INFO } from '../shared/node-paths.js';
import { parseRuntimeInfo, type RuntimeInfo } from '../shared/ota/runtime-info.js';

/** The runtime `current` names, or undefined on an image whose engine comes from Debian's packages. */
export async function currentRuntime(dir = RUNTIME_CURRENT): Promise<RuntimeInfo | undefined> {
  const text = await readFile(join(dir, RUNTIME_INFO), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : parseRuntimeInfo(text, dir);
}
