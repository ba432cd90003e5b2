import { activeLevers, type ResolvedLever } from '../levers.js';
import { assignments, compare, na, type LeverKind } from '../kind.js';

/** Bootloader EEPROM settings the active levers ask for (e.g. SDRAM_BANKLOW=1); the build puts them into the EEPROM image. */
export function eepromSettings(levers: readonly ResolvedLever[]): Record<string, string> {
  return Object.fromEntries(activeLevers(levers).flatMap((l) => Object.entries(l.apply.eeprom ?? {}).map(([k, v]) => [k, String(v)])));
}

/** Bootloader EEPROM keys: written by the build into the EEPROM update, read back with vcgencmd. */
export const eeprom: LeverKind<'eeprom'> = {
  key: 'eeprom',
  describe: (settings) => `bootloader EEPROM ${assignments(settings)}`,
  async check(settings, { sys }) {
    const r = await sys.run('vcgencmd', ['bootloader_config']);
    return Object.entries(settings).map(([key, value]) =>
      r.missing || r.code !== 0
        ? na(`bootloader ${key}`, String(value), 'no Raspberry Pi bootloader here (vcgencmd bootloader_config unavailable)')
        : compare(`bootloader ${key}`, String(value), new RegExp(`^${key}=(.*)$`, 'm').exec(r.stdout)?.[1] ?? '(unset)'),
    );
  },
};
