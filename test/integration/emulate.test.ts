import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type EmulatedCluster } from '../../src/emulate/cluster.js';
import { REPO, runCli, TEST_CACHE } from '../helpers/cli.js';

const work = mkdtempSync(join(tmpdir(), 'pi-image-emulate-it-'));

/** Two nodes from one image on the private LAN: they reach each other, and nothing else exists on it. */
describe('emulated LAN', () => {
  let cluster: EmulatedCluster;

  beforeAll(async () => {
    const out = join(work, 'out');
    const built = await runCli(['build', '--board', 'qemu', '--hostname', 'pi-test', '--layer', join(REPO, 'test/fixtures/layers/serial-console'), '--out', out], { env: { PI_IMAGE_CACHE: TEST_CACHE } });
    if (built.exitCode !== 0) throw new Error(built.stderr);
    // One vCPU each: two emulated nodes on a 2-core host without overcommitting it.
    cluster = await startCluster({ image: join(out, 'pi-image-qemu.img'), nodes: 2, cpus: 1 });
    for (const vm of cluster.vms) await vm.waitFor(/root@pi-test:~# /, 10 * 60_000);
    for (const vm of cluster.vms) await vm.check('stty -echo; dmesg -n 1; export TERM=dumb SYSTEMD_COLORS=0');
  }, 20 * 60_000);

  afterAll(async () => {
    await cluster?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  /** The node's link-local IPv4 address on the LAN NIC (the one with MAC 52:54:00:a1:…). */
  async function lanAddress(i: number): Promise<string> {
    const vm = cluster.vms[i];
    if (!vm) throw new Error(`no node ${i}`);
    const cmd = "for n in /sys/class/net/*; do [ \"$(cat $n/address)\" = '52:54:00:a1:00:0" + (i + 1) + "' ] && basename $n; done; true";
    const nic = await vm.check(cmd);
    for (let tries = 0; tries < 60; tries++) {
      const addr = (await vm.check(`ip -4 -o addr show dev ${nic} | awk '{print $4}' | cut -d/ -f1`)).trim();
      if (addr) return addr;
      await new Promise((r) => setTimeout(r, 2000));
    }
    throw new Error(`node${i + 1}: no IPv4 address on ${nic}`);
  }

  it('connects the nodes to each other', async () => {
    const a = await lanAddress(0);
    const b = await lanAddress(1);
    expect(a).toMatch(/^169\.254\./);
    expect(a).not.toBe(b);
    // A TCP round trip with the image's own Node.js (minbase has no ping).
    await cluster.vms[1]?.check(`node -e "require('net').createServer((s) => s.end('hello from node2')).listen(7777, '${b}')" > /dev/null 2>&1 &`);
    await new Promise((r) => setTimeout(r, 5000));
    const reply = await cluster.vms[0]?.check(
      `node -e "const s = require('net').connect(7777, '${b}'); s.on('data', (d) => { console.log(String(d)); process.exit(0); }); setTimeout(() => process.exit(1), 30000)"`,
      90_000,
    );
    expect(reply).toBe('hello from node2');
  }, 5 * 60_000);

  it('keeps the LAN off the host: the bridge lives in its own network namespace', async () => {
    const host = await execa('ip', ['-o', 'link']);
    expect(host.stdout).not.toMatch(/\btap0\b/);
    const inside = await cluster.lan.exec(['ip', '-o', 'link']);
    expect(inside.stdout).toMatch(/tap0.*master br0/);
    expect(inside.stdout).toMatch(/tap1.*master br0/);
  });

  it('cleans up after itself', async () => {
    const ns = cluster.lan.namespace;
    await cluster.stop();
    expect((await execa('ip', ['netns', 'list'])).stdout).not.toContain(ns);
  });
});
