import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { planBuild } from '../../../../src/host/pipeline/pipeline.js';
import { adoptImportedBase } from '../../../../src/host/plan/plan.js';
import { resolveConfig } from '../../../../src/host/config/config.js';
import { mmdebstrapArgs } from '../../../../src/host/tools/mmdebstrap.js';
import { REPO } from '../../../helpers/cli.js';

const FIXTURE_LAYER = join(REPO, 'test/fixtures/layers/serial-console');

describe('plan', () => {
  it('resolves the qemu board with its layers in order', async () => {
    const { plan } = await planBuild(resolveConfig({}, {}), { env: {} });
    expect(plan.board.name).toBe('qemu');
    expect(plan.layers.map((l) => l.name)).toEqual(['system', 'growroot', 'ssh-hostkeys', 'pi-node', 'tuning', 'cluster', 'engine-llama-cpp']);
    expect(plan.base.packages).toEqual([...plan.base.packages].sort());
    expect(plan.base.packages).toEqual(expect.arrayContaining(['linux-image-arm64', 'openssh-server', 'fdisk']));
    expect(plan.boot.cmdline).toMatch(new RegExp(`root=PARTUUID=${plan.disk.diskId}-02 `));
    expect(plan.outputs.img).toBe('pi-image-qemu.img');
    expect(plan.sourceDateEpoch).toEqual({ value: null, from: 'base rootfs' });
  });

  it('takes SOURCE_DATE_EPOCH from the config, then the environment', async () => {
    expect((await planBuild(resolveConfig({ source_date_epoch: 5 }, {}), { env: { SOURCE_DATE_EPOCH: '7' } })).plan.sourceDateEpoch).toEqual({ value: 5, from: 'config' });
    expect((await planBuild(resolveConfig({}, {}), { env: { SOURCE_DATE_EPOCH: '7' } })).plan.sourceDateEpoch).toEqual({ value: 7, from: 'environment' });
  });

  it('gives the same keys for the same inputs', async () => {
    const a = (await planBuild(resolveConfig({}, {}), { env: {} })).plan;
    const b = (await planBuild(resolveConfig({}, {}), { env: {} })).plan;
    expect(a.cacheKeys).toEqual(b.cacheKeys);
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
    await expect(planBuild(resolveConfig({ board: 'pi3' }, {}))).rejects.toThrow(/unknown board "pi3"; available boards: pi4, pi5, qemu/);
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-plan-'));
    cpSync(FIXTURE_LAYER, join(dir, 'layer'), { recursive: true });
    writeFileSync(join(dir, 'layer/layer.yaml'), 'name: needy\ndescription: x\nrequires: [nothere]\n');
    await expect(planBuild(resolveConfig({ layers: [join(dir, 'layer')] }, {}))).rejects.toThrow(/layer needy requires layer "nothere"/);
  });

  it('renders config.txt for the Pi boards', async () => {
    const { plan } = await planBuild(resolveConfig({ board: 'pi5' }, {}), { env: {} });
    expect(plan.boot.configTxt).toContain('[all]\nkernel=vmlinuz\ninitramfs initrd.img followkernel\narm_64bit=1\n');
    expect(plan.boot.cmdline).toContain('console=serial0,115200 console=tty1 root=PARTUUID=');
  });

  it('makes the mmdebstrap command line from the plan', async () => {
    const { plan } = await planBuild(resolveConfig({ apt: { check_valid_until: false }, mirrors: ['http://m.example/debian'] }, {}), { env: {} });
    const args = mmdebstrapArgs(plan.base, '/tmp/x.tar', { root: true });
    expect(args).toContain('--mode=root');
    expect(args).toContain('--arch=arm64');
    expect(args).toContain('--variant=minbase');
    expect(args).toContain('--aptopt=Acquire::Check-Valid-Until "false"');
    expect(args).toContain(`--include=${plan.base.packages.join(',')}`);
    expect(args).toContain('--customize-hook=chroot "$1" systemctl enable systemd-networkd.service');
    expect(args.slice(-3)).toEqual(['forky', '/tmp/x.tar', 'deb http://m.example/debian forky main']);
    expect(mmdebstrapArgs(plan.base, '/tmp/x.tar', { root: false })).toContain('--mode=unshare');
  });

  it("trusts an extra source's keyring while building and installs it into the image", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-key-'));
    writeFileSync(join(dir, 'raspberrypi.gpg'), 'KEY');
    const config = resolveConfig({ apt: { extra_sources: [{ uris: ['http://archive.raspberrypi.com/debian'], suites: ['trixie'], components: ['main'], signed_by: 'raspberrypi.gpg' }] } }, {});
    const { plan } = await planBuild(config, { env: {}, configDir: dir });
    expect(plan.base.keyrings).toEqual([{ path: join(dir, 'raspberrypi.gpg'), name: 'pi-image-source-1.gpg', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) }]);
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
  it('keeps the image disk id, boot partition, config.txt and cmdline.txt, and composes on top', async () => {
    const { plan } = await planBuild(resolveConfig({ board: 'pi5', base: { image: '/x/raspios.img.xz', sha256: 'a'.repeat(64) }, packages: ['jq'] }, {}), { env: {} });
    expect(plan.base.image).toEqual({ source: '/x/raspios.img.xz', sha256: 'a'.repeat(64) });
    expect(plan.base.packages).toContain('jq');
    expect(plan.base.packages).not.toContain('linux-image-arm64');
    expect(plan.boot.copy).toEqual([]);
    expect(plan.boot.configTxt).not.toContain('kernel=vmlinuz');
    const adopted = adoptImportedBase(plan, {
      diskId: 'abcd0123',
      bootOffsetMib: 8,
      bootMib: 512,
      configTxt: '# Pi OS\ndtparam=audio=on\ncamera_auto_detect=1\n[cm4]\notg_mode=1\n[all]\narm_boost=1\n',
      cmdline: 'console=serial0,115200 console=tty1 root=PARTUUID=abcd0123-02 rootfstype=ext4 fsck.repair=yes rootwait quiet\n',
    });
    expect(adopted.disk).toMatchObject({ diskId: 'abcd0123', rootPartuuid: 'abcd0123-02', bootPartuuid: 'abcd0123-01' });
    expect(adopted.boot.cmdline).toBe('console=serial0,115200 console=tty1 root=PARTUUID=abcd0123-02 rootfstype=ext4 fsck.repair=yes rootwait quiet\n');
    expect(adopted.boot.configTxt).toContain('[all]\ndtparam=audio=on\ncamera_auto_detect=1\narm_boost=1\narm_64bit=1\nenable_uart=1');
    expect(adopted.boot.configTxt).toContain('[cm4]\notg_mode=1');
    expect(plan.disk.diskId).not.toBe('abcd0123'); // the input plan is left as it was
  });
});
