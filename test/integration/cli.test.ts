import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseBootconf, readEepromFile } from '../../src/host/firmware/eeprom.js';
import { runCli } from '../helpers/cli.js';
import { synthesizeEeprom } from '../helpers/eeprom-image.js';

const work = mkdtempSync(join(tmpdir(), 'pi-image-cli-'));

describe('pi-image commands', () => {
  it('eeprom show lists the sections and the bootloader config', async () => {
    const image = join(work, 'pieeprom.bin');
    writeFileSync(image, synthesizeEeprom());
    const run = await runCli(['eeprom', 'show', image]);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toMatch(/0x001000  file +magic 0x55aaf11f  length \d+  bootconf.txt/);
    expect(run.stdout).toContain('# bootconf.txt\n[all]\nBOOT_UART=1');
  });

  it('eeprom set writes the image and its signature, changing only what was asked', async () => {
    const image = join(work, 'in.bin');
    writeFileSync(image, synthesizeEeprom());
    const out = join(work, 'pieeprom.upd');
    const run = await runCli(['eeprom', 'set', image, out, 'BOOT_ORDER=0xf416', 'SDRAM_BANKLOW=1', '--timestamp', '1700000000']);
    expect(run.exitCode, run.stderr).toBe(0);
    const updated = readFileSync(out);
    expect(parseBootconf(readEepromFile(updated).toString())).toEqual({ BOOT_UART: '1', POWER_OFF_ON_HALT: '0', BOOT_ORDER: '0xf416', SDRAM_BANKLOW: '1' });
    expect(readFileSync(join(work, 'pieeprom.sig'), 'utf8')).toBe(`${createHash('sha256').update(updated).digest('hex')}\nts: 1700000000\n`);
  });

  it('eeprom set refuses a wrong-size image and writes nothing', async () => {
    const image = join(work, 'short.bin');
    writeFileSync(image, Buffer.alloc(1000));
    const out = join(work, 'never.upd');
    const run = await runCli(['eeprom', 'set', image, out, 'BOOT_ORDER=0xf416']);
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('error: wrong size: 1000 bytes');
    expect(existsSync(out)).toBe(false);
    expect(existsSync(join(work, 'never.sig'))).toBe(false);
  });

  it('bootconfig prints the composed config.txt and cmdline.txt', async () => {
    const run = await runCli(['bootconfig', '--board', 'pi5', '--storage', 'nvme']);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain('[pi5]\ndtparam=uart0_console\ndtparam=pciex1');
    expect(run.stdout).toMatch(/# cmdline.txt\nconsole=serial0,115200 console=tty1 root=PARTUUID=[0-9a-f]{8}-02 /);
  });

  it('levers prints the tuning profile for a board', async () => {
    const run = await runCli(['levers', '--board', 'qemu']);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain('gro_off');
    expect(run.stdout).not.toContain('sdram_banklow'); // a pi5-only lever
  });

  it('every command explains itself with --help', async () => {
    for (const args of [['--help'], ['build', '--help'], ['doctor', '--help'], ['eeprom', 'set', '--help'], ['bootconfig', '--help'], ['levers', '--help'], ['emulate', '--help']]) {
      const run = await runCli(args);
      expect(run.exitCode, args.join(' ')).toBe(0);
      expect(run.stdout).toMatch(/Usage: pi-image/);
    }
    expect((await runCli(['build', '--help'])).stdout).toContain('--check-valid-until');
  });

  it('emulate names a missing image', async () => {
    const run = await runCli(['emulate', join(work, 'nope.img'), '--nodes', '2']);
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain(`error: ${join(work, 'nope.img')} is not an image file`);
  });

  it('emulate refuses numbers it cannot use, naming the flag', async () => {
    for (const [flag, value] of [['--nodes', '0'], ['--nodes', '9'], ['--cpus', 'two'], ['--memory', '64'], ['--api-port', '80'], ['--console', '4']]) {
      const run = await runCli(['emulate', join(work, 'nope.img'), '--nodes', '3', flag as string, value as string]);
      expect(run.exitCode, `${flag} ${value}`).toBe(1);
      expect(run.stderr).toContain(`error: ${flag} must be a whole number`);
      expect(run.stderr).toContain(`not "${value}"`);
    }
  });

  it('doctor --host finds everything the build needs on this machine', async () => {
    const run = await runCli(['doctor', '--host']);
    expect(run.exitCode, run.stdout).toBe(0);
    expect(run.stdout).toMatch(/ok\s+binfmt aarch64/);
  });
});
