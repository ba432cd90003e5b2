import { describe, expect, it } from 'vitest';
import { eeprom, eepromSettings } from '../../../../../src/shared/tuning/kinds/eeprom.js';
import { FakeSystem, lever } from '../../../../helpers/fake-node-system.js';

const state = { profile: 'p', board: 'pi5', levers: [], masked_timers: [] };
const vcgencmd = (stdout: string, code = 0) => new FakeSystem({ commands: { 'vcgencmd bootloader_config': { stdout, code } } });

describe('bootloader EEPROM lever kind', () => {
  it('describes the keys', () => {
    expect(eeprom.describe({ SDRAM_BANKLOW: 1 })).toBe('bootloader EEPROM SDRAM_BANKLOW=1');
  });

  it('collects the settings of the active levers as strings', () => {
    expect(
      eepromSettings([
        lever('sdram_banklow', { eeprom: { SDRAM_BANKLOW: 1 } }),
        lever('off', { eeprom: { BOOT_UART: 1 } }, { enabled: false }),
        lever('elsewhere', { eeprom: { WAKE_ON_GPIO: 0 } }, { onBoard: false }),
        lever('governor', { governor: 'performance' }),
      ]),
    ).toEqual({ SDRAM_BANKLOW: '1' });
  });

  it('renders nothing into the root filesystem and applies nothing at boot', () => {
    expect(eeprom.render).toBeUndefined();
    expect(eeprom.apply).toBeUndefined();
  });

  it('checks each key against the bootloader’s config', async () => {
    const sys = vcgencmd('[all]\nBOOT_UART=0\nSDRAM_BANKLOW=3\n');
    expect(await eeprom.check({ SDRAM_BANKLOW: '1', BOOT_UART: 0, POWER_OFF_ON_HALT: 1 }, { sys, state })).toEqual([
      { what: 'bootloader SDRAM_BANKLOW', expected: '1', actual: '3', status: 'drift' },
      { what: 'bootloader BOOT_UART', expected: '0', actual: '0', status: 'ok' },
      { what: 'bootloader POWER_OFF_ON_HALT', expected: '1', actual: '(unset)', status: 'drift' },
    ]);
    expect(sys.ran).toEqual(['vcgencmd bootloader_config']);
  });

  it('checks: n/a where there is no Raspberry Pi bootloader', async () => {
    const reason = 'no Raspberry Pi bootloader here (vcgencmd bootloader_config unavailable)';
    expect(await eeprom.check({ SDRAM_BANKLOW: 1 }, { sys: new FakeSystem(), state })).toEqual([{ what: 'bootloader SDRAM_BANKLOW', expected: '1', actual: '-', status: 'n/a', reason }]);
    expect((await eeprom.check({ SDRAM_BANKLOW: 1 }, { sys: vcgencmd('', 1), state }))[0]?.status).toBe('n/a');
  });
});
