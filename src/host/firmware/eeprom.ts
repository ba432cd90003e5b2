import { createHash } from 'node:crypto';
import { PiImageError } from '../errors.js';

/**
 * Raspberry Pi 5 bootloader EEPROM image (pieeprom.bin): a 2 MiB flash image made of
 * sections, each an 8-byte big-endian header (magic, length) followed by its body. The
 * config file `bootconf.txt` is one of the file sections; its offset changes between
 * releases, so it is always found by walking the sections.
 */
export const EEPROM_SIZE = 2 * 1024 * 1024;
export const SECTOR_SIZE = 4096;
export const MAX_FILE_DATA = 4076;
export const CONFIG_FILE = 'bootconf.txt';

export const MAGIC = { bootcode: 0x55aaf00f, file: 0x55aaf11f, padding: 0x55aafeef } as const;
const MAGIC_MASK = 0xfffff00f;
const FILE_NAME_BYTES = 12;
/** Name and reserved bytes between a file section's header and its data. */
const FILE_PREFIX = FILE_NAME_BYTES + 4;

export class EepromError extends PiImageError {}

export type SectionKind = 'bootcode' | 'file' | 'padding' | 'firmware';

export interface EepromSection {
  offset: number;
  magic: number;
  length: number;
  kind: SectionKind;
  name?: string;
  dataOffset?: number;
  dataLength?: number;
}

const hex = (n: number, width = 8) => `0x${n.toString(16).padStart(width, '0')}`;
const align8 = (n: number) => Math.ceil(n / 8) * 8;

function kindOf(magic: number): SectionKind {
  if (magic === MAGIC.bootcode) return 'bootcode';
  if (magic === MAGIC.file) return 'file';
  if (magic === MAGIC.padding) return 'padding';
  return 'firmware';
}

export function parseSections(image: Uint8Array): EepromSection[] {
  const buf = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
  if (buf.length !== EEPROM_SIZE) {
    throw new EepromError(
      `wrong size: ${buf.length} bytes; a Raspberry Pi 5 bootloader image (pieeprom.bin) is exactly ${EEPROM_SIZE} bytes (2 MiB)`,
      'use the pieeprom-*.bin from the rpi-eeprom firmware directory (firmware-2712/)',
    );
  }
  const usable = EEPROM_SIZE - SECTOR_SIZE; // the last 4 KiB is never used
  const sections: EepromSection[] = [];
  let offset = 0;
  while (offset + 8 <= usable) {
    const magic = buf.readUInt32BE(offset);
    if (magic === 0x00000000 || magic === 0xffffffff) break;
    if ((magic & MAGIC_MASK) >>> 0 !== MAGIC.bootcode) {
      throw new EepromError(`corrupt image: section at offset ${hex(offset)} has magic ${hex(magic)}, which is not a section magic (0x55aafXXf)`);
    }
    const length = buf.readUInt32BE(offset + 4);
    if (offset + 8 + length > usable) {
      throw new EepromError(`corrupt image: section at offset ${hex(offset)} (length ${length}) runs past the end of the usable flash`);
    }
    const section: EepromSection = { offset, magic, length, kind: kindOf(magic) };
    if (section.kind === 'file') {
      if (length < FILE_PREFIX) throw new EepromError(`corrupt image: file section at offset ${hex(offset)} is shorter than its header`);
      section.name = buf.toString('latin1', offset + 8, offset + 8 + FILE_NAME_BYTES).replace(/\0+$/, '');
      section.dataOffset = offset + 8 + FILE_PREFIX;
      section.dataLength = length - FILE_PREFIX;
    }
    sections.push(section);
    offset = align8(offset + 8 + length);
  }
  return sections;
}

function findFile(sections: EepromSection[], name: string): EepromSection {
  const section = sections.find((s) => s.kind === 'file' && s.name === name);
  if (!section) throw new EepromError(`no file "${name}" in this bootloader image (files: ${sections.filter((s) => s.kind === 'file').map((s) => s.name).join(', ') || 'none'})`);
  return section;
}

export function readEepromFile(image: Uint8Array, name = CONFIG_FILE): Buffer {
  const section = findFile(parseSections(image), name);
  return Buffer.from(image.subarray(section.dataOffset, (section.dataOffset ?? 0) + (section.dataLength ?? 0)));
}

/**
 * Returns a new image with file `name` replaced by `data`. The file keeps its place; it is
 * padded to 8 bytes with 0xFF and a padding section fills the space up to the next section,
 * so nothing else moves.
 */
export function replaceEepromFile(image: Uint8Array, data: Uint8Array, name = CONFIG_FILE): Buffer {
  if (data.length > MAX_FILE_DATA) {
    throw new EepromError(`${name} is ${data.length} bytes; a bootloader file holds at most ${MAX_FILE_DATA} bytes`, 'remove comments or settings');
  }
  const sections = parseSections(image);
  const file = findFile(sections, name);
  const next = sections.find((s) => s.offset > file.offset && s.kind !== 'padding');
  const lastUsed = sections.reduce((end, s) => Math.max(end, align8(s.offset + 8 + s.length)), 0);
  const limit = next?.offset ?? Math.max(lastUsed, Math.min(EEPROM_SIZE - SECTOR_SIZE, file.offset + SECTOR_SIZE));
  const length = FILE_PREFIX + data.length;
  const end = align8(file.offset + 8 + length);
  if (end > limit || (limit - end > 0 && limit - end < 8)) {
    throw new EepromError(`${name} (${data.length} bytes) does not fit before the next section at offset ${hex(limit)}`);
  }
  const out = Buffer.from(image);
  out.writeUInt32BE(length, file.offset + 4);
  const dataOffset = file.offset + 8 + FILE_PREFIX;
  Buffer.from(data).copy(out, dataOffset);
  out.fill(0xff, dataOffset + data.length, limit);
  if (next && limit > end) {
    out.writeUInt32BE(MAGIC.padding, end);
    out.writeUInt32BE(limit - end - 8, end + 4);
  }
  parseSections(out); // never hand back an image the bootloader could not walk
  return out;
}

const KEY = /^[A-Z][A-Z0-9_]*$/;

/** A `[filter]` line other than `[all]`: settings after it apply only conditionally. */
const isConditionalSection = (line: string) => /^\s*\[/.test(line) && !/^\s*\[all\]/i.test(line);

/** Boot modes a BOOT_ORDER nibble may name (Raspberry Pi's bootloader documentation): 0-7, STOP (e), RESTART (f). */
const BOOT_MODE = /^[0-7ef]$/i;
/** Settings that are switches. */
const SWITCHES = ['PCIE_PROBE', 'POWER_OFF_ON_HALT', 'ENABLE_SELF_UPDATE', 'FREEZE_VERSION', 'WAKE_ON_GPIO', 'DISABLE_HDMI'];

/** What is wrong with one bootconf.txt setting, or undefined: checked before anything is written. */
export function bootconfProblem(key: string, value: string): string | undefined {
  if (!KEY.test(key)) return `"${key}" is not a setting name: upper-case letters, digits and _`;
  if (!/^[\x21-\x7e]+$/.test(value)) return `${key}=${JSON.stringify(value)}: a value is one word of printable characters`;
  if (key === 'BOOT_ORDER') {
    const m = /^0x([0-9a-f]{1,8})$/i.exec(value);
    if (!m) return `BOOT_ORDER=${value}: a hex number such as 0xf416 (one digit per boot mode, the last tried first)`;
    const bad = [...(m[1] as string)].find((n) => !BOOT_MODE.test(n));
    if (bad) return `BOOT_ORDER=${value}: ${bad} is no boot mode (0-7, e = stop, f = restart)`;
  }
  if (key === 'SDRAM_BANKLOW' && !/^[0-4]$/.test(value)) return `SDRAM_BANKLOW=${value}: one of 0, 1, 2, 3, 4`;
  if (SWITCHES.includes(key) && !/^[01]$/.test(value)) return `${key}=${value}: 0 or 1`;
  return undefined;
}

/** Every problem of a set of settings at once, as one error (nothing is written before this passes). */
export function checkBootconf(settings: Record<string, string>): void {
  const problems = Object.entries(settings).flatMap(([k, v]) => bootconfProblem(k, v) ?? []);
  if (problems.length) throw new EepromError(`bootloader settings refused, nothing written:\n  - ${problems.join('\n  - ')}`, 'see Raspberry Pi\'s bootloader configuration documentation for the allowed values');
}

/** Sets KEY=value lines of a bootconf.txt, keeping comments, order and conditional sections. */
export function setBootconfKeys(text: string, settings: Record<string, string>): string {
  checkBootconf(settings);
  const lines = text.replace(/\n+$/, '').split('\n');
  const firstSection = lines.findIndex(isConditionalSection);
  const topEnd = firstSection < 0 ? lines.length : firstSection;
  for (const [key, value] of Object.entries(settings)) {
    const at = lines.slice(0, topEnd).findIndex((l) => l.trim().startsWith(`${key}=`));
    if (at >= 0) lines[at] = `${key}=${value}`;
    else lines.splice(topEnd, 0, `${key}=${value}`);
  }
  return `${lines.join('\n')}\n`;
}

export function parseBootconf(text: string): Record<string, string> {
  const settings: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (isConditionalSection(line)) break;
    const m = /^\s*([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) settings[m[1] as string] = (m[2] as string).trim();
  }
  return settings;
}

/** pieeprom.sig: SHA-256 of pieeprom.upd and the time stamp the bootloader compares. */
export function eepromSignature(image: Uint8Array, unixTime: number): string {
  return `${createHash('sha256').update(image).digest('hex')}\nts: ${unixTime}\n`;
}

/** BOOT_ORDER from boot modes, first tried first: [nvme, sd, usb] → 0xf416. */
export function bootOrder(modes: ('sd' | 'usb' | 'nvme' | 'network' | 'restart')[]): string {
  const nibble = { sd: '1', usb: '4', nvme: '6', network: '2', restart: 'f' } as const;
  const seen = new Set(modes);
  if (seen.size !== modes.length) throw new EepromError(`boot_order lists a mode twice: ${modes.join(', ')}`);
  const order = [...modes.filter((m) => m !== 'restart'), 'restart' as const];
  return `0x${order.map((m) => nibble[m]).reverse().join('')}`;
}
