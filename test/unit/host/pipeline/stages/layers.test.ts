import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { planBuild } from '../../../../../src/host/plan/plan-build.js';
import { readAll, readTar, type TarHeader } from '../../../../../src/host/pipeline/rootfs-tar.js';
import { runLayersStage } from '../../../../../src/host/pipeline/stages/layers.js';
import { resolveConfig } from '../../../../../src/host/config/config.js';
import { silentReporter } from '../../../../../src/host/progress.js';
import { PiImageError } from '../../../../../src/host/errors.js';
import { parseBootconf, parseSections, readEepromFile } from '../../../../../src/host/firmware/eeprom.js';
import { synthesizeEeprom } from '../../../../helpers/eeprom-image.js';
import { createHash } from 'node:crypto';
import { REPO } from '../../../../helpers/cli.js';

const FIXTURE_LAYER = join(REPO, 'test/fixtures/layers/serial-console');
const OLD = new Date(1_000_000_000_000);
const NEW = new Date(2_000_000_000_000);

/** A small stand-in for an mmdebstrap rootfs with the entry kinds a real one has. */
async function makeBaseTar(path: string, opts: { eeprom?: boolean; bootFiles?: Record<string, string> } = {}): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack as unknown as NodeJS.ReadableStream, createWriteStream(path));
  const add = (h: TarHeader, body?: string | Buffer) =>
    new Promise<void>((resolve, reject) => {
      const cb = (e?: Error | null) => (e ? reject(e) : resolve());
      if (body === undefined) pack.entry({ uid: 0, gid: 0, mtime: OLD, ...h }, cb);
      else pack.entry({ uid: 0, gid: 0, mtime: OLD, mode: 0o644, ...h }, body, cb);
    });
  await add({ name: './', type: 'directory', mode: 0o755 });
  for (const d of ['etc', 'etc/ssh', 'boot', 'usr', 'usr/bin', 'var', 'var/lib', 'var/lib/dbus']) await add({ name: `./${d}/`, type: 'directory', mode: 0o755 });
  await add({ name: './etc/hostname', type: 'file' }, 'debian\n');
  await add({ name: './etc/localtime', type: 'symlink', linkname: '/usr/share/zoneinfo/Etc/UTC' });
  await add({ name: './etc/ssh/ssh_host_ed25519_key', type: 'file', mode: 0o600 }, 'SECRET KEY');
  await add({ name: './var/lib/dbus/machine-id', type: 'file' }, 'abc\n');
  await add({ name: './boot/vmlinuz-6.12.0-1-arm64', type: 'file', mtime: NEW }, 'KERNEL');
  await add({ name: './boot/initrd.img-6.12.0-1-arm64', type: 'file' }, 'INITRD');
  await add({ name: './usr/bin/ping', type: 'file', mode: 0o755, pax: { 'SCHILY.xattr.security.capability': 'cap', mtime: '123.5' } } as TarHeader, 'PING');
  await add({ name: './usr/bin/ping4', type: 'link', linkname: './usr/bin/ping', size: 0 });
  await add({ name: './vmlinuz', type: 'symlink', linkname: 'boot/vmlinuz-6.12.0-1-arm64' });
  for (const d of ['usr/lib/linux-image-6.12.0-1-arm64', 'usr/lib/linux-image-6.12.0-1-arm64/broadcom']) await add({ name: `./${d}/`, type: 'directory', mode: 0o755 });
  await add({ name: './usr/lib/linux-image-6.12.0-1-arm64/broadcom/bcm2712-rpi-5-b.dtb', type: 'file' }, 'DTB5');
  await add({ name: './usr/lib/linux-image-6.12.0-1-arm64/broadcom/bcm2711-rpi-4-b.dtb', type: 'file' }, 'DTB4');
  if (opts.eeprom) {
    const dir = 'usr/lib/firmware/raspberrypi/bootloader-2712/default';
    for (const d of ['usr/lib/firmware', 'usr/lib/firmware/raspberrypi', 'usr/lib/firmware/raspberrypi/bootloader-2712', dir]) await add({ name: `./${d}/`, type: 'directory', mode: 0o755 });
    await add({ name: `./${dir}/pieeprom-2025-01-01.bin`, type: 'file' }, synthesizeEeprom());
    await add({ name: `./${dir}/pieeprom-2025-06-01.bin`, type: 'file' }, synthesizeEeprom('BOOT_UART=0\n'));
    await add({ name: `./${dir}/recovery.bin`, type: 'file' }, 'RECOVERY');
  }
  if (opts.bootFiles) {
    for (const d of ['boot/firmware']) await add({ name: `./${d}/`, type: 'directory', mode: 0o755 });
    for (const [name, content] of Object.entries(opts.bootFiles)) await add({ name: `./boot/firmware/${name}`, type: 'file' }, content);
  }
  pack.finalize();
  await done;
}

describe('layers stage', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pi-image-layers-'));
  const baseTar = join(dir, 'base.tar');
  await makeBaseTar(baseTar);
  const { plan, inputs: { layers } } = await planBuild(resolveConfig({ hostname: 'node-a', layers: [FIXTURE_LAYER], timezone: 'Europe/Berlin', locale: 'de_DE.UTF-8', ntp_servers: ['192.168.1.1', 'ntp.lan'] }, {}), { env: {} });
  const out = join(dir, 'out');
  mkdirSync(out);
  const sde = 1_500_000_000;
  const meta = await runLayersStage({ plan, layers, baseTar, timers: ['apt-daily.timer', 'fstrim.timer'], sourceDateEpoch: sde, outDir: out, reporter: silentReporter });
  const entries = new Map<string, { header: TarHeader; content: string }>();
  for await (const { header, name, body } of readTar(join(out, 'rootfs.tar'))) entries.set(name, { header, content: (await readAll(body)).toString() });

  it('renders overlay templates and replaces base files', () => {
    expect(entries.get('etc/hostname')?.content).toBe('node-a\n');
    expect(entries.get('etc/fstab')?.content).toContain(`PARTUUID=${plan.disk.rootPartuuid}  /  `);
    expect(entries.get('usr/local/bin/pi-image-test-marker')?.content).toContain('marker node-a');
  });

  it("writes the config's time zone (replacing the base's) and locale", () => {
    expect(entries.get('etc/localtime')?.header).toMatchObject({ type: 'symlink', linkname: '/usr/share/zoneinfo/Europe/Berlin' });
    expect(entries.get('etc/timezone')?.content).toBe('Europe/Berlin\n');
    expect(entries.get('etc/locale.conf')?.content).toBe('LANG=de_DE.UTF-8\n');
    // As Debian's tmpfiles.d makes it at every boot (a file there would be replaced).
    expect(entries.get('etc/default/locale')?.header).toMatchObject({ type: 'symlink', linkname: '../locale.conf' });
    // The config's time servers, as a vendor drop-in an admin's /etc overrides.
    expect(entries.get('usr/lib/systemd/timesyncd.conf.d/pi-image.conf')?.content).toBe('[Time]\nNTP=192.168.1.1 ntp.lan\n');
  });

  it('sets owner, mode and mtime per entry', () => {
    const marker = entries.get('usr/local/bin/pi-image-test-marker')?.header;
    expect(marker?.mode).toBe(0o750);
    expect([marker?.uid, marker?.gid]).toEqual([0, 4]);
    expect(marker?.mtime?.getTime()).toBe(sde * 1000);
    expect(entries.get('usr/lib/pi-image/growroot')?.header.mode).toBe(0o755);
    expect(entries.get('etc/hosts')?.header.mode).toBe(0o644);
    expect(entries.get('usr/lib/systemd/system/pi-image-engine.service')?.header).toMatchObject({ type: 'file', mode: 0o644, uid: 0, gid: 0 });
    expect(entries.get('usr/local/bin')?.header.type).toBe('directory');
  });

  it('clamps newer base mtimes to SOURCE_DATE_EPOCH and keeps older ones', () => {
    expect(entries.get('boot/vmlinuz-6.12.0-1-arm64')?.header.mtime?.getTime()).toBe(sde * 1000);
    expect(entries.get('etc/ssh')?.header.mtime?.getTime()).toBe(OLD.getTime());
  });

  it('drops removed paths (host keys, dbus machine-id)', () => {
    expect(entries.has('etc/ssh/ssh_host_ed25519_key')).toBe(false);
    expect(entries.has('var/lib/dbus/machine-id')).toBe(false);
  });

  it('keeps hard links, symlinks and extended attributes, and drops stale pax times', () => {
    expect(entries.get('usr/bin/ping4')?.header).toMatchObject({ type: 'link', linkname: 'usr/bin/ping' });
    expect(entries.get('vmlinuz')?.header).toMatchObject({ type: 'symlink', linkname: 'boot/vmlinuz-6.12.0-1-arm64' });
    expect(entries.get('usr/bin/ping')?.header.pax).toMatchObject({ 'SCHILY.xattr.security.capability': 'cap' });
    expect(entries.get('usr/bin/ping')?.header.pax).not.toHaveProperty('mtime');
  });

  it('enables overlay units with symlinks', () => {
    expect(entries.get('etc/systemd/system/local-fs.target.wants/pi-image-growroot.service')?.header).toMatchObject({
      type: 'symlink',
      linkname: '/usr/lib/systemd/system/pi-image-growroot.service',
    });
  });

  it('puts kernel, initrd and cmdline.txt on the boot partition and creates its mountpoint', () => {
    expect(readFileSync(join(out, 'boot/vmlinuz'), 'utf8')).toBe('KERNEL');
    expect(readFileSync(join(out, 'boot/initrd.img'), 'utf8')).toBe('INITRD');
    expect(readFileSync(join(out, 'boot/cmdline.txt'), 'utf8')).toBe(plan.boot.cmdline);
    expect(meta.bootFiles.map((f) => f.path)).toEqual(['cmdline.txt', 'initrd.img', 'vmlinuz']);
    expect(entries.get('boot/firmware')?.header.type).toBe('directory');
  });

  it('counts what the root file system must hold', () => {
    expect(meta.inodes).toBe([...entries.values()].filter((e) => e.header.type !== 'link').length);
    expect(meta.contentBytes % 4096).toBe(0);
  });

  it('writes the same tar for the same inputs', async () => {
    const again = join(dir, 'again');
    mkdirSync(again);
    await runLayersStage({ plan, layers, baseTar, timers: ['apt-daily.timer', 'fstrim.timer'], sourceDateEpoch: sde, outDir: again, reporter: silentReporter });
    expect(readFileSync(join(again, 'rootfs.tar')).equals(readFileSync(join(out, 'rootfs.tar')))).toBe(true);
  });
});

describe('layers stage: tuning profile', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pi-image-tuning-'));
  const baseTar = join(dir, 'base.tar');
  await makeBaseTar(baseTar);
  const read = async (tuning: Record<string, boolean | string | number>) => {
    const { plan, inputs: { layers } } = await planBuild(resolveConfig({ tuning }, {}), { env: {} });
    const out = mkdtempSync(join(dir, 'out-'));
    await runLayersStage({ plan, layers, baseTar, timers: ['apt-daily.timer', 'fstrim.timer'], sourceDateEpoch: 1_500_000_000, outDir: out, reporter: silentReporter });
    const entries = new Map<string, { header: TarHeader; content: string }>();
    for await (const { header, name, body } of readTar(join(out, 'rootfs.tar'))) entries.set(name, { header, content: (await readAll(body)).toString() });
    return entries;
  };

  it('puts sysctls, modules, the engine drop-in, timer masks and the doctor state into the image', async () => {
    const entries = await read({});
    expect(entries.get('etc/sysctl.d/90-pi-image-tuning.conf')?.content).toContain('vm.swappiness = 1');
    expect(entries.get('etc/modules-load.d/pi-image-tuning.conf')?.content).toContain('tcp_bbr');
    expect(entries.get('usr/lib/systemd/system/pi-image-engine.service.d/10-tuning.conf')?.content).toContain('LimitMEMLOCK=infinity');
    expect(entries.get('etc/systemd/system/apt-daily.timer')?.header).toMatchObject({ type: 'symlink', linkname: '/dev/null' });
    const state = JSON.parse(entries.get('etc/pi-image/tuning.json')?.content ?? '{}');
    expect(state.masked_timers).toEqual(['apt-daily.timer', 'fstrim.timer']);
  });

  it('leaves out a lever switched off, and records it as disabled', async () => {
    const entries = await read({ swappiness: false, quiet_node: false, busy_poll: 20 });
    const sysctl = entries.get('etc/sysctl.d/90-pi-image-tuning.conf')?.content ?? '';
    expect(sysctl).not.toContain('vm.swappiness');
    expect(sysctl).toContain('net.core.busy_read = 20');
    expect(entries.has('etc/systemd/system/apt-daily.timer')).toBe(false);
    const state = JSON.parse(entries.get('etc/pi-image/tuning.json')?.content ?? '{}');
    expect(state.levers.find((l: { id: string }) => l.id === 'swappiness').enabled).toBe(false);
  });
});

describe('layers stage: Raspberry Pi 5 boot partition and bootloader', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pi-image-pi5-'));
  const withEeprom = join(dir, 'with-eeprom.tar');
  const without = join(dir, 'without.tar');
  await makeBaseTar(withEeprom, { eeprom: true });
  await makeBaseTar(without);
  const stage = async (base: string, config: Record<string, unknown>) => {
    const { plan, inputs: { layers } } = await planBuild(resolveConfig({ board: 'pi5', ...config }, {}), { env: {} });
    const out = mkdtempSync(join(dir, 'out-'));
    const meta = await runLayersStage({ plan, layers, baseTar: base, timers: [], sourceDateEpoch: 1_700_000_000, outDir: out, reporter: silentReporter });
    return { out, meta, plan };
  };

  it('writes config.txt, cmdline.txt, the dtbs and a bootloader update with the requested settings', async () => {
    const { out, meta } = await stage(withEeprom, { storage: 'nvme', bootloader: { power_off_on_halt: 1 } });
    expect(meta.bootFiles.map((f) => f.path)).toEqual(
      expect.arrayContaining(['config.txt', 'cmdline.txt', 'bcm2712-rpi-5-b.dtb', 'pieeprom.upd', 'pieeprom.sig', 'recovery.bin', 'vmlinuz', 'initrd.img']),
    );
    expect(readFileSync(join(out, 'boot/config.txt'), 'utf8')).toContain('[pi5]\ndtparam=uart0_console\ndtparam=pciex1\n');
    const upd = readFileSync(join(out, 'boot/pieeprom.upd'));
    parseSections(upd);
    // The newest image of the default/ channel, with the settings applied.
    expect(parseBootconf(readEepromFile(upd).toString())).toEqual({ BOOT_UART: '0', SDRAM_BANKLOW: '1', BOOT_ORDER: '0xf416', POWER_OFF_ON_HALT: '1' });
    expect(readFileSync(join(out, 'boot/pieeprom.sig'), 'utf8')).toBe(`${createHash('sha256').update(upd).digest('hex')}\nts: 1700000000\n`);
    expect(readFileSync(join(out, 'boot/recovery.bin'), 'utf8')).toBe('RECOVERY');
  });

  it('fails and says where to get a bootloader image when the base has none', async () => {
    await expect(stage(without, {})).rejects.toThrow(/asks for bootloader settings \(SDRAM_BANKLOW=1\) but no Raspberry Pi 5 bootloader image/);
  });

  it('leaves the bootloader alone when nothing asks for a setting', async () => {
    const { meta } = await stage(without, { tuning: { sdram_banklow: false } });
    expect(meta.bootFiles.map((f) => f.path)).not.toContain('pieeprom.upd');
  });

  it('refuses an overclock key from a layer or the config (no-overclock guard)', async () => {
    const layer = join(dir, 'overclock-layer');
    mkdirSync(join(layer, 'overlay'), { recursive: true });
    writeFileSync(join(layer, 'layer.yaml'), 'name: overclock\ndescription: a layer that overclocks\nconfig_txt:\n  pi5: [over_voltage_delta=50000, arm_freq=3000]\n');
    await expect(planBuild(resolveConfig({ board: 'pi5', layers: [layer] }, {}), { env: {} })).rejects.toThrow(
      /config.txt would overclock: "over_voltage_delta=50000" in \[pi5\], "arm_freq=3000" in \[pi5\]; the tuning profile pi5-inference forbids it/,
    );
    await expect(planBuild(resolveConfig({ board: 'pi5', config_txt: { pi5: ['arm_freq=3000'] } }, {}), { env: {} })).rejects.toThrow(
      /config.txt would overclock: "arm_freq=3000" in \[pi5\]; the tuning profile pi5-inference forbids it/,
    );
  });
});

describe('layers stage: boot files from the base tarball', () => {
  it('refuses a boot/firmware/ entry that climbs out with .., and writes nothing outside the boot folder', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-climb-'));
    const baseTar = join(dir, 'base.tar');
    await makeBaseTar(baseTar, { bootFiles: { 'config.txt': 'ok\n', '../../escaped': 'PWNED' } });
    const { plan, inputs: { layers } } = await planBuild(resolveConfig({}, {}), { env: {} });
    const out = join(dir, 'entry');
    mkdirSync(out);
    // Joined to <entry>/boot, this name would land at <dir>/escaped.
    const error = await runLayersStage({ plan, layers, baseTar, timers: [], sourceDateEpoch: 1_500_000_000, outDir: out, reporter: silentReporter }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PiImageError);
    expect((error as PiImageError).message).toMatch(/base rootfs tarball: entry "boot\/firmware\/..\/..\/escaped" would be written outside the boot partition/);
    expect((error as PiImageError).hint).toMatch(/paths inside boot\/firmware\/ without "\.\."/);
    expect(existsSync(join(dir, 'escaped'))).toBe(false);
  });
});
