import { closeSync, cpSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/host/pipeline/stages/artifacts.js';
import type { QemuVm } from '../../src/host/emulate/qemu-vm.js';
import { sha256OfFile } from '../../src/shared/file-hash.js';
import { bootImage } from '../helpers/boot.js';
import { expectOk, QEMU_TEST_FLAGS, REPO, runCli, stageCaching, TEST_CACHE, type CliRun } from '../helpers/cli.js';

const work = mkdtempSync(join(tmpdir(), 'pi-image-it-'));
const layerDir = join(work, 'serial-console');
cpSync(join(REPO, 'test/fixtures/layers/serial-console'), layerDir, { recursive: true });
const env = { PI_IMAGE_CACHE: TEST_CACHE };
const common = ['--board', 'qemu', ...QEMU_TEST_FLAGS, '--hostname', 'pi-test', '--layer', layerDir, '--json'];

const manifestOf = (out: string) => JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Manifest;

/** Boots an image on a copy grown by 1 GiB, with a NIC. */
const bootCopy = (image: string, name: string) => bootImage(image, { name, workDir: work, copyTo: join(work, `${name}.img`), nic: true });

interface DoctorReport {
  levers: { id: string; status: string; reason?: string; checks: { what: string; status: string; actual: string }[] }[];
}

async function doctor(vm: QemuVm): Promise<{ status: number; report: DoctorReport }> {
  const { output, status } = await vm.run('pi-node doctor --json', 120_000);
  return { status, report: JSON.parse(output) as DoctorReport };
}

describe('qemu board image', () => {
  const out1 = join(work, 'out1');
  const out3 = join(work, 'out3');
  let first: CliRun;

  beforeAll(async () => {
    first = await runCli(['build', ...common, '--out', out1], { env });
    expectOk(first);
  });

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('writes every artifact, and SHA256SUMS matches them', async () => {
    const m = manifestOf(out1);
    for (const name of ['pi-image-qemu.img', 'pi-image-qemu.img.zst', 'pi-image-qemu.bmap', 'SHA256SUMS', 'manifest.json']) {
      expect(statSync(join(out1, name)).size).toBeGreaterThan(0);
    }
    const sums = readFileSync(join(out1, 'SHA256SUMS'), 'utf8').trim().split('\n');
    expect(sums).toHaveLength(3);
    for (const line of sums) {
      const [hash, file] = line.split(/\s+/);
      expect(await sha256OfFile(join(out1, file as string))).toBe(hash);
    }
    expect(m.packages.find((p) => p.name === 'linux-image-arm64')?.version).toMatch(/\d/);
    expect(m.packages.find((p) => p.name === 'openssh-server')).toBeDefined();
    expect(m.layers.map((l) => l.name)).toEqual(['system', 'growroot', 'ssh-hostkeys', 'pi-node', 'tuning', 'engine', 'cluster', 'engine-llama-cpp', 'serial-console']);
    expect(m.disk.partitions.map((p) => [p.start_sector, p.type])).toEqual([[16384, 'c'], [1064960, '83']]);
    expect(m.source_date_epoch).toBeGreaterThan(1_600_000_000);
    expect(first.events.some((e) => e.type === 'stage-progress' && e.stage === 'artifacts' && typeof e.fraction === 'number')).toBe(true);
  });

  it('is accepted by bmaptool, and the copy equals the image over the mapped blocks', async () => {
    const target = join(work, 'bmap-copy.img');
    await execa('bmaptool', ['copy', '--bmap', join(out1, 'pi-image-qemu.bmap'), join(out1, 'pi-image-qemu.img.zst'), target]);
    const bmap = readFileSync(join(out1, 'pi-image-qemu.bmap'), 'utf8');
    const blockSize = Number(/<BlockSize>\s*(\d+)\s*<\/BlockSize>/.exec(bmap)?.[1]);
    const ranges = [...bmap.matchAll(/<Range[^>]*>\s*(\d+)(?:-(\d+))?\s*<\/Range>/g)].map((m) => [Number(m[1]), Number(m[2] ?? m[1])] as const);
    expect(ranges.length).toBeGreaterThan(0);
    const a = openSync(join(out1, 'pi-image-qemu.img'), 'r');
    const b = openSync(target, 'r');
    const bufA = Buffer.alloc(blockSize * 256);
    const bufB = Buffer.alloc(blockSize * 256);
    let compared = 0;
    for (const [first, last] of ranges) {
      for (let block = first; block <= last; block += 256) {
        const n = Math.min(256, last - block + 1) * blockSize;
        readSync(a, bufA, 0, n, block * blockSize);
        readSync(b, bufB, 0, n, block * blockSize);
        expect(bufA.subarray(0, n).equals(bufB.subarray(0, n))).toBe(true);
        compared += n;
      }
    }
    closeSync(a);
    closeSync(b);
    expect(compared).toBeGreaterThan(100 * 1024 * 1024);
    rmSync(target);
  });

  it('rebuilds byte-identically from the same cached base', async () => {
    // Drop the layers cache so the layers and disk stages really run again.
    rmSync(join(TEST_CACHE, 'layers'), { recursive: true, force: true });
    const out2 = join(work, 'out2');
    const second = await runCli(['build', ...common, '--out', out2], { env });
    expectOk(second);
    expect(stageCaching(second)).toEqual({ base: true, engine: true, layers: false, disk: false, artifacts: false });
    expect(await sha256OfFile(join(out2, 'pi-image-qemu.img'))).toBe(await sha256OfFile(join(out1, 'pi-image-qemu.img')));
    rmSync(out2, { recursive: true, force: true });
  }, 30 * 60_000);

  it('rebuilds only the layers and disk stages after a one-file overlay change', async () => {
    const changed = join(work, 'changed-layer');
    cpSync(layerDir, changed, { recursive: true });
    writeFileSync(join(changed, 'overlay/usr/local/bin/pi-image-test-marker.hbs'), '#!/bin/sh\necho "changed {{hostname}}"\n');
    // The same image with one lever switched off: booted below to show it is absent and reported as disabled.
    const config = join(work, 'lever-off.yaml');
    writeFileSync(config, 'tuning:\n  swappiness: false\ntimezone: Europe/Berlin\n');
    const third = await runCli(['build', '--config', config, '--board', 'qemu', ...QEMU_TEST_FLAGS, '--hostname', 'pi-test', '--layer', changed, '--json', '--out', out3], { env });
    expectOk(third);
    expect(stageCaching(third)).toEqual({ base: true, engine: true, layers: false, disk: false, artifacts: false });
    expect(manifestOf(out3).inputs.cache_keys.base).toBe(manifestOf(out1).inputs.cache_keys.base);
    expect(manifestOf(out3).inputs.cache_keys.layers).not.toBe(manifestOf(out1).inputs.cache_keys.layers);
  }, 30 * 60_000);

  describe('booted in qemu-system-aarch64 (virt, cortex-a76, restricted network)', () => {
    let vm: QemuVm;
    const manifest = () => manifestOf(out1);

    beforeAll(async () => {
      vm = await bootCopy(join(out1, 'pi-image-qemu.img'), 'node1');
    }, 15 * 60_000);

    afterAll(async () => {
      await vm?.kill();
    });

    it('reaches multi-user.target', async () => {
      expect(await vm.check('systemctl is-active multi-user.target')).toBe('active');
      expect(await vm.check('systemctl --failed --no-legend --plain | wc -l')).toBe('0');
      // First boot applies no unit presets (the image decided that): no "Failed to preset" per unit.
      expect(vm.consoleLog).not.toContain('Failed to preset');
    });

    it('is named <cluster>-<node id> by its first boot, in the kernel and in /etc/hostname', async () => {
      const name = await vm.check('hostname');
      expect(name).toMatch(/^pi-cluster-[0-9a-f]{6}$/);
      expect(await vm.check('cat /etc/hostname')).toBe(name);
      expect(name.slice('pi-cluster-'.length)).toBe((await vm.check('cat /var/lib/pi-image/node-id')).slice(0, 6));
    });

    it('has the overlay files with their owner and mode', async () => {
      expect(await vm.check('stat -c "%U:%G %a" /usr/local/bin/pi-image-test-marker')).toBe('root:adm 750');
      expect(await vm.check('/usr/local/bin/pi-image-test-marker')).toBe('marker pi-test');
      expect(await vm.check('stat -c "%U:%G %a" /usr/lib/pi-image/growroot /etc/fstab')).toBe('root:root 755\nroot:root 644');
      expect(JSON.parse(await vm.check('cat /etc/pi-image/image.json'))).toMatchObject({ board: 'qemu', role: 'auto' });
      expect(await vm.check('findmnt -no FSTYPE /boot/firmware')).toBe('vfat');
    });

    it('made its own identity on first boot', async () => {
      expect(await vm.check('cat /etc/machine-id')).toMatch(/^[0-9a-f]{32}$/);
      expect(await vm.check('ls /etc/ssh/ssh_host_ed25519_key')).toBe('/etc/ssh/ssh_host_ed25519_key');
      expect(await vm.check('passwd -S root | cut -d" " -f2')).toMatch(/^L/);
    });

    it('finishes an interrupted first boot when run again: every step repeats safely, the stamp comes last', async () => {
      const state = 'cat /var/lib/pi-image/node-id /etc/hostname /etc/pi-image/cluster.secret; getent passwd pi; getent shadow pi root | cut -d: -f1,2; grep -c "^127.0.1.1" /etc/hosts; stat -c "%a %U" /home/pi/.ssh/authorized_keys';
      const before = await vm.check(state);
      // As after a power cut just before the stamp: all steps done, no stamp.
      await vm.check('rm /var/lib/pi-image/first-boot.done');
      expect(await vm.check('pi-node first-boot 2>&1', 120_000)).toContain('node id');
      expect(await vm.check('ls /var/lib/pi-image/first-boot.done')).toBe('/var/lib/pi-image/first-boot.done');
      expect(await vm.check(state)).toBe(before);
      expect(await vm.check('pi-node first-boot 2>&1')).toContain('first boot was done before');
    });

    it('grew the root file system to fill the disk', async () => {
      const m = manifest();
      const root = m.disk.partitions[1];
      const partBytes = Number(await vm.check('lsblk -bno SIZE /dev/vda2'));
      const fsBytes = Number(await vm.check('df -B1 --output=size / | tail -1'));
      expect(partBytes).toBeGreaterThan((root?.sectors ?? 0) * 512 + 900 * 1024 ** 2);
      expect(fsBytes).toBeGreaterThan((root?.sectors ?? 0) * 512 + 800 * 1024 ** 2);
      expect(await vm.check('systemctl is-active pi-image-growroot.service')).toBe('active');
    });

    it('has the partition table the manifest records', async () => {
      const m = manifest();
      const table = JSON.parse(await vm.check('sfdisk --json /dev/vda')) as { partitiontable: { id: string; label: string; partitions: { start: number; size: number; type: string }[] } };
      expect(table.partitiontable.label).toBe('dos');
      expect(table.partitiontable.id).toBe(`0x${m.disk.id}`);
      const [p1, p2] = table.partitiontable.partitions;
      const [m1, m2] = m.disk.partitions;
      expect([p1?.start, p1?.size, p1?.type]).toEqual([m1?.start_sector, m1?.sectors, m1?.type]);
      expect([p2?.start, p2?.type]).toEqual([m2?.start_sector, m2?.type]);
      expect(p2?.size).toBeGreaterThan(m2?.sectors ?? 0); // grown on first boot
      expect(await vm.check('findmnt -no SOURCE /')).toBe('/dev/vda2');
      expect(await vm.check(`blkid -s PARTUUID -o value /dev/vda2`)).toBe(`${m.disk.id}-02`);
    });
    it('pi-node doctor: every lever that can apply in a VM is ok, every other n/a with a reason, none drifts', async () => {
      const { status, report } = await doctor(vm);
      const by = Object.fromEntries(report.levers.map((l) => [l.id, l]));
      const problems = report.levers.filter((l) => !['ok', 'n/a'].includes(l.status) || (l.status === 'n/a' && !l.reason));
      expect(problems, JSON.stringify(problems, null, 2)).toEqual([]);
      expect(status).toBe(0);
      for (const id of ['tcp_bbr', 'tcp_buffers', 'busy_poll', 'swappiness', 'gro_off', 'nic_cpu', 'napi_defer', 'engine_cpus', 'jemalloc', 'memlock', 'engine_priority', 'quiet_node']) {
        expect(by[id]?.status, `${id}: ${JSON.stringify(by[id])}`).toBe('ok');
      }
      expect(by.cpu_governor).toMatchObject({ status: 'n/a', reason: expect.stringContaining('no cpufreq') });
      expect(by.sdram_banklow).toMatchObject({ status: 'n/a', reason: expect.stringContaining('this image is for qemu') });
      expect(by.quiet_node?.checks.map((c) => c.what)).toEqual(expect.arrayContaining(['timer apt-daily.timer', 'timer fstrim.timer']));
    });

    it('pi-node doctor reports drift and exits non-zero when a sysctl is changed', async () => {
      await vm.check('sysctl -qw vm.swappiness=60');
      const { status, report } = await doctor(vm);
      expect(status).toBe(1);
      const swappiness = report.levers.find((l) => l.id === 'swappiness');
      expect(swappiness?.status).toBe('drift');
      expect(swappiness?.checks[0]).toMatchObject({ what: 'sysctl vm.swappiness', status: 'drift', actual: '60' });
      expect(await vm.run('pi-node doctor')).toMatchObject({ status: 1, output: expect.stringMatching(/drift\s+swappiness/) });
      await vm.check('sysctl -qw vm.swappiness=1');
      expect((await doctor(vm)).status).toBe(0);
    });

    it('systemd-analyze verify accepts every unit the image adds', async () => {
      const units = (await vm.check('ls /usr/lib/systemd/system/pi-image-*.service')).split('\n');
      expect(units.length).toBeGreaterThanOrEqual(4);
      const result = await vm.run(`systemd-analyze verify ${units.join(' ')} 2>&1`, 120_000);
      expect(result, result.output).toMatchObject({ status: 0 });
      expect(await vm.check('systemctl is-active pi-image-nic-tuning.service pi-image-cpu-tuning.service')).toBe('active\nactive');
    });
  });

  it('pi-image emulate shows boot progress (plain lines into a pipe, no terminal codes) and Ctrl-C stops the nodes and removes the LAN', async () => {
    const cli = execa(process.execPath, [join(REPO, 'dist/host/cli/main.js'), 'emulate', join(out1, 'pi-image-qemu.img'), '--nodes', '1', '--cpus', '1', '--api-port', '18290'], { reject: false, stdin: 'ignore' });
    let stderr = '';
    const seen = new Promise<void>((resolve) =>
      cli.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        if (/node1: (systemd|multi-user|ready)/.test(stderr) && /network namespace /.test(stderr)) resolve();
      }),
    );
    await Promise.race([seen, cli.then((r) => { throw new Error(`emulate ended early (${r.exitCode}):\n${stderr}`); })]);
    const namespace = /network namespace ([\w-]+)/.exec(stderr)?.[1] as string;
    const pids = (await execa('ip', ['netns', 'pids', namespace])).stdout.split('\n').filter(Boolean).map(Number);
    expect(pids.length).toBeGreaterThan(0);
    cli.kill('SIGINT');
    const ended = await cli;
    expect(ended.exitCode, stderr).toBe(130);
    expect(stderr).toMatch(/node1: starting[\s\S]*node1: systemd/);
    expect(stderr).toContain('stopping the nodes');
    // Written to a pipe, as `pi-image emulate … > log 2>&1` does: lines a file can hold.
    expect(`${ended.stdout}${stderr}`).not.toMatch(/[\x1b\r]/);
    for (const pid of pids) expect(() => process.kill(pid, 0), `pid ${pid} still runs`).toThrow();
    expect((await execa('ip', ['netns', 'list'])).stdout).not.toContain(namespace);
  }, 10 * 60_000);

  it('pi-image emulate --json: one JSON event per line on stdout (the LAN, each boot milestone), nothing on the status line', async () => {
    const cli = execa(process.execPath, [join(REPO, 'dist/host/cli/main.js'), 'emulate', join(out1, 'pi-image-qemu.img'), '--nodes', '1', '--cpus', '1', '--api-port', '18291', '--json'], { reject: false, stdin: 'ignore' });
    let stdout = '';
    const seen = new Promise<void>((resolve) =>
      cli.stdout?.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (/"type":"node".*"milestone":"(systemd|multi-user|ready)"/.test(stdout)) resolve();
      }),
    );
    await Promise.race([seen, cli.then((r) => { throw new Error(`emulate ended early (${r.exitCode}):\n${r.stderr}`); })]);
    cli.kill('SIGINT');
    const ended = await cli;
    expect(ended.exitCode, ended.stderr).toBe(130);
    const events = ended.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; node?: number; namespace?: string; apiPorts?: number[] });
    expect(events.find((e) => e.type === 'lan')).toMatchObject({ namespace: expect.stringMatching(/\w/), apiPorts: [18291] });
    expect(events.filter((e) => e.type === 'node').every((e) => e.node === 1)).toBe(true);
    expect(ended.stderr).not.toMatch(/node1: /);
  }, 10 * 60_000);

  describe('an image with a lever switched off', () => {
    let vm: QemuVm;

    beforeAll(async () => {
      vm = await bootCopy(join(out3, 'pi-image-qemu.img'), 'node3');
    }, 15 * 60_000);

    afterAll(async () => {
      await vm?.kill();
    });

    it('has no trace of the lever and doctor reports it as disabled', async () => {
      expect(await vm.check('cat /etc/sysctl.d/90-pi-image-tuning.conf')).not.toContain('swappiness');
      expect(await vm.check('grep -rl swappiness /etc/sysctl.d /usr/lib/sysctl.d || true')).toBe('');
      const { status, report } = await doctor(vm);
      expect(report.levers.find((l) => l.id === 'swappiness')).toMatchObject({ status: 'disabled', reason: expect.stringContaining('switched off') });
      expect(status).toBe(0);
      expect(await vm.check('/usr/local/bin/pi-image-test-marker')).toBe('changed pi-test');
    });

    it("keeps the config's time zone (timedatectl reads it) and the default locale", async () => {
      expect(await vm.check('timedatectl show -p Timezone --value')).toBe('Europe/Berlin');
      expect(await vm.check('date +%Z')).toMatch(/^CES?T$/);
      expect(await vm.check('cat /etc/default/locale')).toBe('LANG=C.UTF-8');
    });
  });
});
