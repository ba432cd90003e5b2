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

  it('eeprom set refuses values the bootloader does not take, naming each, and writes nothing', async () => {
    const image = join(work, 'pieeprom-for-bad-values.bin');
    writeFileSync(image, synthesizeEeprom());
    const out = join(work, 'bad.upd');
    const run = await runCli(['eeprom', 'set', image, out, 'BOOT_ORDER=banana', 'SDRAM_BANKLOW=7']);
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('BOOT_ORDER=banana: a hex number');
    expect(run.stderr).toContain('SDRAM_BANKLOW=7: one of 0, 1, 2, 3, 4');
    expect(existsSync(out)).toBe(false);
    expect(existsSync(join(work, 'bad.sig'))).toBe(false);
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

  it('emulate --json reports an error as an NDJSON event, and refuses --console with it', async () => {
    const events = (stdout: string) => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; message?: string });
    const missing = await runCli(['emulate', join(work, 'nope.img'), '--json']);
    expect(missing.exitCode).toBe(1);
    expect(events(missing.stdout)).toEqual([expect.objectContaining({ type: 'error', message: `${join(work, 'nope.img')} is not an image file` })]);
    const both = await runCli(['emulate', join(work, 'nope.img'), '--json', '--console', '1']);
    expect(both.exitCode).toBe(1);
    expect(events(both.stdout)[0]?.message).toMatch(/--console writes a console to stdout, where --json writes its events/);
  });

  it('emulate refuses numbers it cannot use, naming the flag', async () => {
    for (const [flag, value] of [['--nodes', '0'], ['--nodes', '9'], ['--cpus', 'two'], ['--memory', '64'], ['--api-port', '80'], ['--console', '4']]) {
      const run = await runCli(['emulate', join(work, 'nope.img'), '--nodes', '3', flag as string, value as string]);
      expect(run.exitCode, `${flag} ${value}`).toBe(1);
      expect(run.stderr).toContain(`error: ${flag} must be a whole number`);
      expect(run.stderr).toContain(`not "${value}"`);
    }
  });

  it('exits 2 for a usage mistake, 0 for help and version, and explains a bad path instead of calling it a bug', async () => {
    for (const args of [['build', '--bogus'], ['nosuch'], ['eeprom'], ['eeprom', 'set', 'only-one-argument']]) {
      const run = await runCli(args);
      expect(run.exitCode, args.join(' ')).toBe(2);
    }
    for (const args of [['--help'], ['--version'], ['build', '--help']]) expect((await runCli(args)).exitCode, args.join(' ')).toBe(0);
    const run = await runCli(['tiny-model', '/nonexistent/folder/x.gguf']);
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('error: /nonexistent/folder/x.gguf: no such file or folder (ENOENT)');
    expect(run.stderr).not.toMatch(/bug|    at /);
  });

  it('every read-only command answers --json with parseable JSON', async () => {
    const image = join(work, 'pieeprom-json.bin');
    writeFileSync(image, synthesizeEeprom());
    const levers = JSON.parse((await runCli(['levers', '--json'])).stdout) as { levers: { id: string }[] };
    expect(levers.levers.map((l) => l.id)).toContain('sdram_banklow');
    const boot = JSON.parse((await runCli(['bootconfig', '--board', 'pi5', '--json'])).stdout) as { configTxt: string; cmdline: string };
    expect(boot.configTxt).toContain('[pi5]');
    expect(boot.cmdline).toContain('root=PARTUUID=');
    const eeprom = JSON.parse((await runCli(['eeprom', 'show', image, '--json'])).stdout) as { sections: unknown[]; settings: Record<string, string> };
    expect(eeprom.sections.length).toBeGreaterThan(0);
    expect(Object.keys(eeprom.settings).length).toBeGreaterThan(0);
    const model = JSON.parse((await runCli(['tiny-model', join(work, 'm.gguf'), '--json'])).stdout) as { model: string; answer: string };
    expect(model).toMatchObject({ model: 'demo', answer: 'Hello from the pi-image cluster.' });
  });

  it('build --print-plan fails exactly when build would, with the same message: a missing base image, dllama without binaries, a text file named .gguf', async () => {
    writeFileSync(join(work, 'fake.gguf'), 'not a model\n');
    writeFileSync(join(work, 'missing-base.yaml'), `board: pi5\nbase:\n  image: ./nowhere.img.xz\n  sha256: "${'a'.repeat(64)}"\n`);
    const cases: [string[], RegExp][] = [
      [['--config', join(work, 'missing-base.yaml')], /base.image: .*nowhere.img.xz does not exist/],
      [['--board', 'pi5', '--engine', 'dllama', '--cluster-size', '2'], /give engine.source \(its source tarball, compiled during the build\) or engine.dllama_dir/],
      [['--board', 'qemu', '--model', join(work, 'fake.gguf')], /fake.gguf: it is not a GGUF file/],
    ];
    for (const [args, message] of cases) {
      const plan = await runCli(['build', ...args, '--print-plan']);
      const build = await runCli(['build', ...args, '--out', join(work, 'never-built')]);
      expect(plan.exitCode, args.join(' ')).toBe(1);
      expect(build.exitCode, args.join(' ')).toBe(1);
      const errorLine = (run: { stderr: string }) => run.stderr.split('\n').find((l) => l.startsWith('error:'));
      expect(errorLine(plan)).toMatch(message);
      expect(errorLine(build)).toBe(errorLine(plan));
      expect(existsSync(join(work, 'never-built'))).toBe(false);
    }
  });

  it('doctor --host finds everything the build needs on this machine', async () => {
    const run = await runCli(['doctor', '--host']);
    expect(run.exitCode, run.stdout).toBe(0);
    expect(run.stdout).toMatch(/ok\s+binfmt aarch64/);
  });
});
