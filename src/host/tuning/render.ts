import { inRootfs, TUNING_STATE_PATH } from '../../shared/node-paths.js';
import type { GeneratedEntry } from '../../shared/tuning/kind.js';
import { kindValues, renderLevers } from '../../shared/tuning/kinds/index.js';
import { maskedTimers } from '../../shared/tuning/kinds/mask-timers.js';
import { activeLevers, type ResolvedLever, type TuningState } from '../../shared/tuning/levers.js';

export { eepromSettings } from '../../shared/tuning/kinds/eeprom.js';
export { forbiddenConfigTxtKeys } from '../../shared/tuning/kinds/forbid-config-txt.js';

/**
 * Every file the tuning profile puts into the image. Only levers that are on and meant for
 * the board produce anything; a switched-off lever leaves no trace but its entry in
 * tuning.json (marked disabled, so doctor can say so).
 */
export function renderTuning(opts: { profile: string; board: string; levers: ResolvedLever[]; timers: string[] }): GeneratedEntry[] {
  const files = renderLevers(opts.levers, { profile: opts.profile, timers: opts.timers });
  const masked = maskedTimers(kindValues(activeLevers(opts.levers), 'mask_timers'), opts.timers);
  const state: TuningState = { profile: opts.profile, board: opts.board, levers: opts.levers, masked_timers: masked };
  files.push({ path: inRootfs(TUNING_STATE_PATH), content: `${JSON.stringify(state, null, 2)}\n` });
  return files;
}
