import { readFile } from 'node:fs/promises';
import type { TuningState } from '../tuning/render.js';

export const TUNING_STATE = '/etc/pi-image/tuning.json';

export async function loadTuningState(path = TUNING_STATE): Promise<TuningState> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as TuningState;
  } catch (e) {
    throw new Error(`cannot read the tuning profile of this image (${path}): ${(e as Error).message}`);
  }
}
