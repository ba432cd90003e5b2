import { readFile } from 'node:fs/promises';
import { CARD_SETTINGS_PATH, NODE_SETTINGS_PATH, TUNING_STATE_PATH } from '../shared/node-paths.js';
import type { NodeSettings } from '../shared/node-settings.js';
import type { TuningState } from '../shared/tuning/levers.js';

async function readJson<T>(path: string, what: string): Promise<T> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (e) {
    throw new Error(`cannot read ${what} (${path}): ${(e as Error).message}`);
  }
}

/** The image's settings, with the role this card was given at flash time (`pi-image flash --role`) in place of the image's. */
export async function loadNodeSettings(path = NODE_SETTINGS_PATH, cardPath = CARD_SETTINGS_PATH): Promise<NodeSettings> {
  const settings = await readJson<NodeSettings>(path, "this node's settings; the image was not built with the cluster layer");
  const card = await readFile(cardPath, 'utf8').then((t) => JSON.parse(t) as { role?: unknown }, () => undefined);
  return card?.role === 'root' || card?.role === 'worker' ? { ...settings, role: card.role } : settings;
}

export const loadTuningState = (path = TUNING_STATE_PATH) => readJson<TuningState>(path, 'the tuning profile of this image');
