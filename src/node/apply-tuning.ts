import type { TuningState } from '../shared/tuning/levers.js';
import type { ApplyTarget, Log } from '../shared/tuning/kind.js';
import { applyLevers } from '../shared/tuning/kinds/index.js';
import type { NodeSystem } from '../shared/tuning/system.js';
import { nodeSystem } from './node-system.js';

/** `pi-node apply-tuning`: the levers no file in the image can hold (CPU governor, NIC settings), at every boot. */
export function applyTuning(state: TuningState, target: ApplyTarget, log: Log, sys: NodeSystem = nodeSystem): Promise<void> {
  return applyLevers(state.levers, { sys, log, target });
}
