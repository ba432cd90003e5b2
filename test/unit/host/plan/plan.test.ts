import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { planBuild } from '../../../../src/host/plan/plan-build.js';
import { makePlan } from '../../../../src/host/plan/plan.js';
import { resolveConfig } from '../../../../src/host/config/config.js';
import { fetchReleaseDate, mmdebstrapArgs, newestReleaseDate } from '../../../../src/host/tools/mmdebstrap.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { REPO } from '../../../helpers/cli.js';

const FIXTURE_LAYER = join(REPO, 'test/fixtures/layers/serial-console');
/** sha256 of the three bytes KEY (sha256sum). */
const KEY_SHA256 = '5ca24005b740717ba4f3f6bc48a230700e68c2a4b11ecedb96f169f4efaf1f21';

describe('plan', () => {
  it('resolves the qemu board with its layers in order', async () => {
    const { plan } = await planBuild(resolveConfig({}, {}), { env: {} });
    expect(plan.board.name).toBe('qemu');
    expect(plan.layers.map((l) => l.name)).toEqual(['system', 'growroot', 'ssh-hostkeys', 'pi-node', 'tuning', 'engine', 'cluster', 'engine-llama-cpp']);
    expect(plan.base.packages).toEqual([...plan.base.packages].sort());
    expect(plan.base.packages).toEqual(expect.arrayContaining(['linux-image-arm64', 'openssh-server', 'fdisk']));
    expect(plan.outputs.img).toBe('pi-image-qemu.img');
    expect(plan.sourceDateEpoch).toEqual({ value: null, from: 'base rootfs' });
  });

  it('takes SOURCE_DATE_EPOCH from the config, then the environment', async () => {
    expect((await planBuild(resolveConfig({ source_date_epoch: 5 }, {}), { env: { SOURCE_DATE_EPOCH: '7' } })).plan.sourceDateEpoch).toEqual({ value: 5, from: 'config' });
    expect((await planBuild(resolveConfig({}, {}), { env: { SOURCE_DATE_EPOCH: '7' } })).plan.sourceDateEpoch).toEqual({ value: 7, from: 'environment' });
  });

  it('derives the disk id from the image name and board, and renders the PARTUUIDs into cmdline.txt', async () => {
    // sha256('{"board":"qemu","diskId":"pi-image-qemu"}') starts 2219b6f1; with name: node-a, 32e8f594.
    const { plan } = await planBuild(resolveConfig({}, {}), { env: {} });
    expect(plan.disk).toEqual({ diskId: '2219b6f1', bootPartuuid: '2219b6f1-01', rootPartuuid: '2219b6f1-02', headroomMib: 256 });
    expect(plan.boot.cmdline).toBe('console=ttyAMA0,115200 root=PARTUUID=2219b6f1-02 rootfstype=ext4 fsck.repair=yes rootwait quiet\n');
    expect(plan.boot.configTxt).toBeNull();
    const named = (await planBuild(resolveConfig({ name: 'node-a' }, {}), { env: {} })).plan;
    expect(named.disk.rootPartuuid).toBe('32e8f594-02');
    expect(named.outputs).toMatchObject({ img: 'node-a.img', zst: 'node-a.img.zst', bmap: 'node-a.bmap' });
  });

  it('keys the base by the base alone: the hostname changes only the layers key, the order of keys in the file nothing', async () => {
    const a = (await planBuild(resolveConfig({ hostname: 'a', packages: ['jq', 'htop'], mirrors: ['http://m.example/debian'] }, {}), { env: {} })).plan.cacheKeys;
    const b = (await planBuild(resolveConfig({ mirrors: ['http://m.example/debian'], packages: ['htop', 'jq'], hostname: 'b' }, {}), { env: {} })).plan.cacheKeys;
    const c = (await planBuild(resolveConfig({ packages: ['htop', 'jq'], mirrors: ['http://m.example/debian'], hostname: 'a' }, {}), { env: {} })).plan.cacheKeys;
    expect(b.base).toBe(a.base);
    expect(b.layers).not.toBe(a.layers);
    expect(c).toEqual(a);
  });

  it('is frozen: nothing changes a plan once it is made', async () => {
    const { plan } = await planBuild(resolveConfig({}, {}), { env: {} });
    expect(() => {
      (plan.disk as { diskId: string }).diskId = 'ffffffff';
    }).toThrow(TypeError);
    expect(() => (plan.base.packages as string[]).push('htop')).toThrow(TypeError);
    expect(Object.isFrozen(plan.layers[0]?.files[0])).toBe(true);
  });

  it('changes only the layers key when an overlay file changes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-plan-'));
    cpSync(FIXTURE_LAYER, join(dir, 'layer'), { recursive: true });
    const config = resolveConfig({ layers: [join(dir, 'layer')] }, {});
    const before = (await planBuild(config, { env: {} })).plan.cacheKeys;
    writeFileSync(join(dir, 'layer/overlay/usr/local/bin/pi-image-test-marker.hbs'), '#!/bin/sh\necho changed\n');
    const after = (await planBuild(config, { env: {} })).plan.cacheKeys;
    expect(after.base).toBe(before.base);
    expect(after.layers).not.toBe(before.layers);
  });

  it('changes the base key when the package set changes', async () => {
    const a = (await planBuild(resolveConfig({}, {}), { env: {} })).plan.cacheKeys;
    const b = (await planBuild(resolveConfig({ packages: ['htop'] }, {}), { env: {} })).plan.cacheKeys;
    expect(b.base).not.toBe(a.base);
  });

  it('rejects an unknown board and a layer requiring a missing layer', async () => {
    await expect(planBuild(resolveConfig({ board: 'pi3' }, {}))).rejects.toThrow(/unknown board "pi3" \(did you mean "pi4"\?\); available boards: pi4, pi5, qemu/);
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-plan-'));
    cpSync(FIXTURE_LAYER, join(dir, 'layer'), { recursive: true });
    writeFileSync(join(dir, 'layer/layer.yaml'), 'name: needy\ndescription: x\nrequires: [nothere]\n');
    await expect(planBuild(resolveConfig({ layers: [join(dir, 'layer')] }, {}))).rejects.toThrow(/layer needy requires layer "nothere"/);
  });

  it('renders config.txt for the Pi boards', async () => {
    const { plan } = await planBuild(resolveConfig({ board: 'pi5' }, {}), { env: {} });
    expect(plan.boot.configTxt).toBe(
      '# Generated by pi-image: edit pi-image.yaml, not this file.\n\n[all]\nkernel=vmlinuz\ninitramfs initrd.img followkernel\narm_64bit=1\nenable_uart=1\ndisable_overscan=1\n\n[pi5]\ndtparam=uart0_console\n',
    );
    expect(plan.boot.cmdline).toBe('console=serial0,115200 console=tty1 root=PARTUUID=2f675dab-02 rootfstype=ext4 fsck.repair=yes rootwait\n');
  });

  it('makes the mmdebstrap command line from the plan', async () => {
    const { plan } = await planBuild(resolveConfig({ apt: { check_valid_until: false }, mirrors: ['http://m.example/debian'] }, {}), { env: {} });
    const args = mmdebstrapArgs(plan.base, '/tmp/x.tar', { root: true });
    expect(args).toContain('--mode=root');
    expect(args).toContain('--arch=arm64');
    expect(args).toContain('--variant=minbase');
    expect(args).toContain('--aptopt=Acquire::Check-Valid-Until "false"');
    expect(args).toContain(`--include=${plan.base.packages.join(',')}`);
    expect(args).toContain('--customize-hook=chroot "$1" systemctl enable -- systemd-networkd.service');
    expect(args.slice(-3)).toEqual(['forky', '/tmp/x.tar', 'deb http://m.example/debian forky main']);
    expect(mmdebstrapArgs(plan.base, '/tmp/x.tar', { root: false })).toContain('--mode=unshare');
  });

  it("takes the default SOURCE_DATE_EPOCH from the archive's Release dates, before apt's lists are removed", async () => {
    const { plan } = await planBuild(resolveConfig({}, {}), { env: {} });
    const args = mmdebstrapArgs(plan.base, '/tmp/x.tar', { root: true, releaseDatesFile: '/cache/base/release-dates' });
    const dates = args.findIndex((a) => a.includes("sed -n 's/^Date: //p' > /cache/base/release-dates"));
    const cleanup = args.findIndex((a) => a.includes('rm -rf "$1"/var/lib/apt/lists/*'));
    expect(dates).toBeGreaterThan(0);
    expect(dates).toBeLessThan(cleanup);
    // Two Release files (a suite and an extra source): the newest date wins; noise is ignored.
    expect(newestReleaseDate('Sat, 21 Nov 2026 20:12:04 UTC\nSun, 22 Nov 2026 08:10:11 UTC\n\n')).toBe(Date.UTC(2026, 10, 22, 8, 10, 11) / 1000);
    expect(newestReleaseDate('Mon, 02 Mar 2026 14:00:00 +0100\n')).toBe(Date.UTC(2026, 2, 2, 13, 0, 0) / 1000);
    expect(newestReleaseDate('')).toBeUndefined();
    expect(newestReleaseDate('not a date\n')).toBeUndefined();
  });

  it("fetches the archive's Release date before the build (each mirror's InRelease), so mmdebstrap stamps with it", async () => {
    const server = createServer((req, res) => {
      if (req.url === '/debian/dists/forky/InRelease') res.end('-----BEGIN PGP SIGNED MESSAGE-----\nOrigin: Debian\nDate: Thu, 30 Oct 2026 08:08:01 UTC\nValid-Until: Thu, 06 Nov 2026 08:08:01 UTC\n');
      else if (req.url === '/extra/dists/extra/InRelease') res.end('Date: Sat, 01 Nov 2026 00:00:00 UTC\n');
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const { plan } = await planBuild(resolveConfig({ mirrors: [`${url}/debian`] }, {}), { env: {} });
      expect(await fetchReleaseDate(plan.base)).toBe(Date.UTC(2026, 9, 30, 8, 8, 1) / 1000);
      const withExtra = (await planBuild(resolveConfig({ mirrors: [`${url}/debian`], apt: { extra_sources: [{ uris: [`${url}/extra`], suites: ['extra'], components: ['main'] }] } }, {}), { env: {} })).plan;
      expect(await fetchReleaseDate(withExtra.base)).toBe(Date.UTC(2026, 10, 1) / 1000);
      const nowhere = (await planBuild(resolveConfig({ mirrors: [`${url}/nothing`] }, {}), { env: {} })).plan;
      expect(await fetchReleaseDate(nowhere.base)).toBeUndefined();
    } finally {
      server.close();
    }
  });

  it('puts no unit name into the hook shell that is not one (base_enable from a layer)', async () => {
    const { plan } = await planBuild(resolveConfig({}, {}), { env: {} });
    const evil = { ...plan.base, enableUnits: ['ssh.service; touch /tmp/PWNED #'] };
    expect(() => mmdebstrapArgs(evil, '/tmp/x.tar', { root: true })).toThrow(
      /base_enable: "ssh.service; touch \/tmp\/PWNED #" is not a systemd unit name/,
    );
    expect(() => mmdebstrapArgs(evil, '/tmp/x.tar', { root: true })).toThrow(expect.objectContaining({ hint: expect.stringMatching(/allowed: .*\^\[A-Za-z0-9@._-\]/) }));
    const quoted = { ...plan.base, enableUnits: ['serial-getty@ttyAMA0.service'] };
    expect(mmdebstrapArgs(quoted, '/tmp/x.tar', { root: true })).toContain('--customize-hook=chroot "$1" systemctl enable -- serial-getty@ttyAMA0.service');
  });

  it("trusts an extra source's keyring while building and installs it into the image", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-key-'));
    writeFileSync(join(dir, 'raspberrypi.gpg'), 'KEY');
    const config = resolveConfig({ apt: { extra_sources: [{ uris: ['http://archive.raspberrypi.com/debian'], suites: ['trixie'], components: ['main'], signed_by: 'raspberrypi.gpg' }] } }, {}, { dir });
    const { plan } = await planBuild(config, { env: {} });
    expect(plan.base.keyrings).toEqual([{ path: join(dir, 'raspberrypi.gpg'), name: 'pi-image-source-1.gpg', sha256: KEY_SHA256 }]);
    const args = mmdebstrapArgs(plan.base, '/tmp/x.tar', { root: true, keyringDir: '/tmp/keys' });
    expect(args).toContain('--keyring=/tmp/keys');
    expect(args).toContain('--setup-hook=copy-in /tmp/keys/pi-image-source-1.gpg /etc/apt/trusted.gpg.d/');
    expect(args).toContain('deb http://archive.raspberrypi.com/debian trixie main');
    await expect(planBuild(resolveConfig({ apt: { extra_sources: [{ uris: ['http://x/'], suites: ['a'], components: ['main'], signed_by: '/nope.gpg' }] } }, {}))).rejects.toThrow(
      /apt.extra_sources\[0\].signed_by: cannot read \/nope.gpg/,
    );
  });
});

describe('plan on an existing image', () => {
  const imported = {
    diskId: 'abcd0123',
    bootOffsetMib: 4,
    bootMib: 256,
    configTxt: '# Pi OS\ndtparam=audio=on\ncamera_auto_detect=1\n[cm4]\notg_mode=1\n[all]\narm_boost=1\n',
    cmdline: 'console=serial0,115200 console=tty1 root=/dev/mmcblk0p2 rootfstype=ext4 fsck.repair=yes rootwait quiet\n',
  };

  it('refuses a local base image that is not there before any work (--print-plan fails as the build would)', async () => {
    await expect(planBuild(resolveConfig({ board: 'pi5', base: { image: '/nonexistent/raspios.img.xz', sha256: 'a'.repeat(64) } }, {}), { env: {} })).rejects.toThrow(/base.image: \/nonexistent\/raspios.img.xz does not exist/);
  });

  it('plans without the kernel, the board packages and boot files an image brings', async () => {
    const { plan } = await planBuild(resolveConfig({ board: 'pi5', base: { image: 'https://downloads.example/raspios.img.xz', sha256: 'a'.repeat(64) }, packages: ['jq'] }, {}), { env: {} });
    expect(plan.base.image).toEqual({ source: 'https://downloads.example/raspios.img.xz', sha256: 'a'.repeat(64) });
    expect(plan.base.packages).toContain('jq');
    expect(plan.base.packages).not.toContain('linux-image-arm64');
    expect(plan.boot.copy).toEqual([]);
    expect(plan.boot.configTxt).not.toContain('kernel=vmlinuz');
  });

  it('keeps the image disk id, boot partition, config.txt and cmdline.txt, and composes on top', async () => {
    const { inputs, plan } = await planBuild(resolveConfig({ board: 'pi5', base: { image: 'https://downloads.example/raspios.img.xz', sha256: 'a'.repeat(64) } }, {}), { env: {} });
    const final = makePlan(inputs, imported);
    expect(final.disk).toEqual({ diskId: 'abcd0123', bootPartuuid: 'abcd0123-01', rootPartuuid: 'abcd0123-02', headroomMib: 256 });
    expect([final.boot.offsetMib, final.boot.partitionMib]).toEqual([4, 256]);
    // The image's words first; the board's root= (rendered with the image's disk id) replaces the image's own.
    expect(final.boot.cmdline).toBe('console=serial0,115200 console=tty1 root=PARTUUID=abcd0123-02 rootfstype=ext4 fsck.repair=yes rootwait quiet\n');
    expect(final.boot.configTxt).toBe(
      [
        '# Generated by pi-image: edit pi-image.yaml, not this file.',
        '',
        '[all]',
        'dtparam=audio=on',
        'camera_auto_detect=1',
        'arm_boost=1',
        'arm_64bit=1',
        'enable_uart=1',
        'disable_overscan=1',
        '',
        '[cm4]',
        'otg_mode=1',
        '',
        '[pi5]',
        'dtparam=uart0_console',
        '',
      ].join('\n'),
    );
    expect(final.cacheKeys.base).toBe(plan.cacheKeys.base);
    expect(final.cacheKeys.layers).not.toBe(plan.cacheKeys.layers);
    expect(plan.disk.diskId).toBe('2f675dab'); // the plan made before the base stage is left as it was
  });
});
