import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/host/pipeline/stages/artifacts.js';
import type { QemuVm } from '../../src/host/emulate/qemu-vm.js';
import { bootImage } from '../helpers/boot.js';
import { parseBootconf, parseSections, readEepromFile } from '../../src/host/firmware/eeprom.js';
import { expectOk, QEMU_TEST_FLAGS, REPO, runCli, TEST_CACHE } from '../helpers/cli.js';
import { synthesizeEeprom } from '../helpers/eeprom-image.js';
import { sha256OfFile } from '../../src/shared/file-hash.js';

const work = mkdtempSync(join(tmpdir(), 'pi-image-base-'));
const env = { PI_IMAGE_CACHE: TEST_CACHE };
const fixtureLayer = join(REPO, 'test/fixtures/layers/serial-console');

async function sfdisk(image: string) {
  return (JSON.parse((await execa('sfdisk', ['--json', image])).stdout) as { partitiontable: { id: string; partitions: { start: number; size: number; type: string }[] } }).partitiontable;
}

async function bootFile(image: string, name: string): Promise<Buffer> {
  const dest = join(work, `extracted-${name}`);
  await execa('mcopy', ['-n', '-i', `${image}@@${8 * 1024 * 1024}`, `::${name}`, dest], { env: { MTOOLS_SKIP_CHECK: '1' } });
  return readFileSync(dest);
}

/**
 * A Raspberry-Pi-OS-layout image (FAT bootfs at 8 MiB, ext4 rootfs, root=PARTUUID, /boot/firmware),
 * built here from Debian packages, used as base.image of a pi5 build.
 */
describe('an existing Raspberry Pi OS layout image as the base', () => {
  const baseOut = join(work, 'base-out');
  const out = join(work, 'out');
  let baseImage: string;

  beforeAll(async () => {
    expectOk(await runCli(['build', '--board', 'qemu', ...QEMU_TEST_FLAGS, '--hostname', 'pi-test', '--layer', fixtureLayer, '--out', baseOut], { env }));
    baseImage = join(baseOut, 'pi-image-qemu.img');
    // Stand-ins for Raspberry Pi's binary blobs: a bootloader image in the published format, and a recovery.bin.
    writeFileSync(join(work, 'pieeprom-2025-01-01.bin'), synthesizeEeprom());
    writeFileSync(join(work, 'recovery.bin'), 'RECOVERY-BLOB');
    const config = join(work, 'pi-image.yaml');
    writeFileSync(
      config,
      [
        'board: pi5',
        'hostname: pi-test',
        `base: { image: ${baseImage}, sha256: ${await sha256OfFile(baseImage)} }`,
        'packages: [jq]',
        `layers: [${fixtureLayer}]`,
        'storage: nvme',
        `bootloader: { image: ${join(work, 'pieeprom-2025-01-01.bin')}, power_off_on_halt: 1 }`,
        '',
      ].join('\n'),
    );
    expectOk(await runCli(['build', '--config', config, '--out', out, '--json'], { env }));
  }, 45 * 60_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('keeps the partition layout and the PARTUUIDs of the base image', async () => {
    const before = await sfdisk(baseImage);
    const after = await sfdisk(join(out, 'pi-image-pi5.img'));
    expect(after.id).toBe(before.id);
    const place = (p?: { start: number; size: number; type: string }) => [p?.start, p?.size, p?.type];
    expect(place(after.partitions[0])).toEqual(place(before.partitions[0]));
    expect([after.partitions[1]?.start, after.partitions[1]?.type]).toEqual([before.partitions[1]?.start, before.partitions[1]?.type]);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Manifest;
    expect(manifest.disk.id).toBe(before.id.replace(/^0x/, ''));
    expect(manifest.packages.find((p) => p.name === 'jq')).toBeDefined();
  });

  it('puts pieeprom.upd, pieeprom.sig and recovery.bin with the requested settings on the boot partition', async () => {
    const image = join(out, 'pi-image-pi5.img');
    const upd = await bootFile(image, 'pieeprom.upd');
    parseSections(upd);
    expect(parseBootconf(readEepromFile(upd).toString())).toMatchObject({ SDRAM_BANKLOW: '1', BOOT_ORDER: '0xf416', POWER_OFF_ON_HALT: '1' });
    expect((await bootFile(image, 'pieeprom.sig')).toString()).toMatch(new RegExp(`^${createHash('sha256').update(upd).digest('hex')}\\nts: \\d+\\n$`));
    expect((await bootFile(image, 'recovery.bin')).toString()).toBe('RECOVERY-BLOB');
    const configTxt = (await bootFile(image, 'config.txt')).toString();
    expect(configTxt).toContain('[pi5]\ndtparam=uart0_console\ndtparam=pciex1');
    expect(configTxt).not.toContain('kernel=vmlinuz');
    expect((await bootFile(image, 'cmdline.txt')).toString()).toContain(`root=PARTUUID=${(await sfdisk(image)).id.replace(/^0x/, '')}-02`);
  });

  it('rejects a base image whose sha256 does not match, before any work', async () => {
    const config = join(work, 'bad-sha.yaml');
    writeFileSync(config, `board: pi5\nbase: { image: ${baseImage}, sha256: "${'0'.repeat(64)}" }\n`);
    const run = await runCli(['build', '--config', config, '--out', join(work, 'never')], { env });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/base.image: .* has sha256 [0-9a-f]{64}, not the 0{64} the config pins/);
  }, 10 * 60_000);

  describe('booted', () => {
    let vm: QemuVm;

    beforeAll(async () => {
      vm = await bootImage(join(out, 'pi-image-pi5.img'), { name: 'pios', workDir: work });
    }, 15 * 60_000);

    afterAll(async () => {
      await vm?.kill();
    });

    it('knows the added package in dpkg, and has our layers, tuning and agent', async () => {
      expect(await vm.check("dpkg -s jq | grep '^Status'")).toBe('Status: install ok installed');
      expect(await vm.check('echo \'{"a":1}\' | jq -M -c .a')).toBe('1');
      expect(JSON.parse(await vm.check('cat /etc/pi-image/image.json'))).toMatchObject({ board: 'pi5' });
      expect(await vm.check('cat /proc/sys/net/ipv4/tcp_congestion_control')).toBe('bbr');
      expect(await vm.check('pi-node help | head -1')).toBe('usage: pi-node <command>');
      expect(await vm.check('ls -1 /boot/firmware/pieeprom.upd /boot/firmware/pieeprom.sig /boot/firmware/recovery.bin')).toBe(
        '/boot/firmware/pieeprom.sig\n/boot/firmware/pieeprom.upd\n/boot/firmware/recovery.bin',
      );
      expect(await vm.check('findmnt -no SOURCE /')).toBe('/dev/vda2');
    });
  });
});
