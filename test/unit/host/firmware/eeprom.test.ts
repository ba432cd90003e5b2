import { describe, expect, it } from 'vitest';
import {
  bootconfProblem,
  bootOrder,
  EEPROM_SIZE,
  EepromError,
  eepromSignature,
  MAGIC,
  parseBootconf,
  parseSections,
  readEepromFile,
  replaceEepromFile,
  setBootconfKeys,
} from '../../../../src/host/firmware/eeprom.js';

import { FACTORY_CONFIG, synthesizeEeprom as synthesize } from '../../../helpers/eeprom-image.js';

describe('bootloader EEPROM image', () => {
  it('walks the sections', () => {
    const kinds = parseSections(synthesize()).map((s) => [s.kind, s.offset, s.name]);
    expect(kinds).toEqual([
      ['bootcode', 0, undefined],
      ['padding', 3016, undefined],
      ['file', 0x1000, 'bootconf.txt'],
      ['padding', expect.any(Number), undefined],
      ['firmware', 0x2000, undefined],
    ]);
  });

  it('finds bootconf.txt wherever a release puts it', () => {
    expect(readEepromFile(synthesize(FACTORY_CONFIG, 0x3000)).toString()).toBe(FACTORY_CONFIG);
  });

  it('round-trips: writing the same config back gives the same bytes', () => {
    const img = synthesize();
    expect(replaceEepromFile(img, readEepromFile(img)).equals(img)).toBe(true);
  });

  it('setting BOOT_ORDER and SDRAM_BANKLOW changes only the config section and its padding', () => {
    const img = synthesize();
    const config = setBootconfKeys(readEepromFile(img).toString(), { BOOT_ORDER: bootOrder(['nvme', 'sd', 'usb']), SDRAM_BANKLOW: '1' });
    const out = replaceEepromFile(img, Buffer.from(config));
    expect(readEepromFile(out).toString()).toBe('[all]\nBOOT_UART=1\nPOWER_OFF_ON_HALT=0\nBOOT_ORDER=0xf416\nSDRAM_BANKLOW=1\n');
    for (let i = 0; i < EEPROM_SIZE; i++) {
      if (i >= 0x1000 && i < 0x2000) continue;
      if (out[i] !== img[i]) throw new Error(`byte ${i.toString(16)} changed outside the config sector`);
    }
    const sections = parseSections(out);
    expect(sections.map((s) => s.kind)).toEqual(['bootcode', 'padding', 'file', 'padding', 'firmware']);
    const padding = sections[3];
    expect((padding?.offset ?? 0) % 8).toBe(0);
    expect((padding?.offset ?? 0) + 8 + (padding?.length ?? 0)).toBe(0x2000);
  });

  it('updates keys before the first conditional section and keeps comments', () => {
    const text = '# factory\nBOOT_UART=0\n[gpio4=1]\nBOOT_ORDER=0xf1\n';
    expect(setBootconfKeys(text, { BOOT_ORDER: '0xf416', BOOT_UART: '1' })).toBe('# factory\nBOOT_UART=1\nBOOT_ORDER=0xf416\n[gpio4=1]\nBOOT_ORDER=0xf1\n');
    expect(parseBootconf('A_B=1\nBOOT_ORDER=0xf416\n[x]\nC=2\n')).toEqual({ A_B: '1', BOOT_ORDER: '0xf416' });
  });

  it('rejects a file over 4076 bytes', () => {
    expect(() => replaceEepromFile(synthesize(), Buffer.alloc(4077, 0x41))).toThrowError(/4077 bytes; a bootloader file holds at most 4076 bytes/);
  });

  it('rejects a wrong size', () => {
    expect(() => parseSections(Buffer.alloc(1024 * 1024, 0xff))).toThrowError(/wrong size: 1048576 bytes; .* exactly 2097152 bytes/);
  });

  it('rejects a corrupt magic with its offset', () => {
    const img = synthesize();
    img.writeUInt32BE(0x12345678, 0x1000);
    expect(() => parseSections(img)).toThrowError(/corrupt image: section at offset 0x00001000 has magic 0x12345678/);
  });

  it('never fails with anything but a clear error on damaged input', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const base = synthesize();
    for (let round = 0; round < 300; round++) {
      const img = Buffer.from(base);
      for (let flips = 0; flips < 4; flips++) {
        const at = [0, 4, 0x1000, 0x1004, 3016, 3020, 0x2000, 0x2004][Math.floor(random() * 8)] as number;
        img[at + Math.floor(random() * 4)] = Math.floor(random() * 256);
      }
      try {
        parseSections(img);
        replaceEepromFile(img, Buffer.from('BOOT_ORDER=0xf416\n'));
      } catch (e) {
        expect(e).toBeInstanceOf(EepromError);
      }
    }
  });

  it('signs with the SHA-256 and a time stamp', () => {
    expect(eepromSignature(Buffer.from('abc'), 1700000000)).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\nts: 1700000000\n');
  });

  it('maps boot modes to BOOT_ORDER, read right to left', () => {
    expect(bootOrder(['nvme', 'sd', 'usb'])).toBe('0xf416');
    expect(bootOrder(['sd', 'usb', 'nvme'])).toBe('0xf641');
    expect(() => bootOrder(['sd', 'sd'])).toThrowError(/twice/);
  });

  it('checks each setting before anything is written: boot modes, SDRAM_BANKLOW 0-4, switches 0/1', () => {
    expect(bootconfProblem('BOOT_ORDER', '0xf416')).toBeUndefined();
    expect(bootconfProblem('BOOT_ORDER', 'banana')).toMatch(/a hex number/);
    expect(bootconfProblem('BOOT_ORDER', '0xf9')).toMatch(/9 is no boot mode/);
    expect(bootconfProblem('BOOT_ORDER', '0x123456789')).toMatch(/a hex number/);
    expect(bootconfProblem('SDRAM_BANKLOW', '4')).toBeUndefined();
    expect(bootconfProblem('SDRAM_BANKLOW', '7')).toBe('SDRAM_BANKLOW=7: one of 0, 1, 2, 3, 4');
    expect(bootconfProblem('PCIE_PROBE', '2')).toBe('PCIE_PROBE=2: 0 or 1');
    expect(bootconfProblem('HDMI_DELAY', 'two words')).toMatch(/one word/);
    expect(bootconfProblem('lower', '1')).toMatch(/not a setting name/);
    expect(() => setBootconfKeys('BOOT_UART=0\n', { BOOT_ORDER: 'banana', SDRAM_BANKLOW: '7' })).toThrowError(/BOOT_ORDER=banana[\s\S]*SDRAM_BANKLOW=7/);
  });
});
