import { readFile } from 'node:fs/promises';
import { NODE_SETTINGS_PATH, TUNING_STATE_PATH } from '../shared/node-paths.js';
import type { NodeSettings } from '../shared/node-settings.js';
import type { TuningState } from '../shared/tuning/levers.js';

async function readJson<T>(path: string, what: string): Promise<T> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (e) {
    throw new Error(`cannot read ${what} (${path}): ${(e as Error).message}`);
  }
}

export const loadNodeSettings = (path = NODE_SETTINGS_PATH) =>
  readJson<NodeSettings>(path, "this node's settings; the image was not built with the cluster layer");

export const loadTuningState = (path = TUNING_STATE_PATH) => readJson<TuningState>(path, 'the tuning profile of this image');
