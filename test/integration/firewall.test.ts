import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memberSetCommands, renderFirewall } from '../../src/node/cluster/firewall.js';

/**
 * The engine-port firewall with the real nftables, in network namespaces made for the test:
 * a node ("srv") with an engine port, a cluster member ("member") and a stranger on the same
 * network ("stranger"). No host network is touched.
 */
const ns = (name: string) => `pi-fw-${process.pid}-${name}`;
const srv = ns('srv');
const member = ns('member');
const stranger = ns('stranger');
const work = mkdtempSync(join(tmpdir(), 'pi-image-fw-'));

const inNs = (name: string, ...cmd: string[]) => execa('ip', ['netns', 'exec', name, ...cmd]);

async function canConnect(from: string, address: string): Promise<boolean> {
  const r = await execa('ip', ['netns', 'exec', from, 'python3', '-c', `import socket; socket.create_connection(("${address}", 50052), timeout=2)`], { reject: false });
  return r.exitCode === 0;
}

describe('engine port firewall (nftables, network namespaces)', () => {
  let listener: ResultPromise;

  beforeAll(async () => {
    for (const n of [srv, member, stranger]) await execa('ip', ['netns', 'add', n]);
    await execa('ip', ['link', 'add', 'fwm0', 'netns', srv, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', member]);
    await execa('ip', ['link', 'add', 'fws0', 'netns', srv, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', stranger]);
    const up = async (n: string, dev: string, addr: string) => {
      await inNs(n, 'ip', 'addr', 'add', addr, 'dev', dev);
      await inNs(n, 'ip', 'link', 'set', dev, 'up');
    };
    await up(srv, 'fwm0', '10.99.1.1/24');
    await up(srv, 'fws0', '10.99.2.1/24');
    await up(member, 'eth0', '10.99.1.2/24');
    await up(stranger, 'eth0', '10.99.2.2/24');
    listener = execa('ip', ['netns', 'exec', srv, 'python3', '-m', 'http.server', '50052', '--bind', '0.0.0.0'], { reject: false });
    await new Promise((r) => setTimeout(r, 1000));
  });

  afterAll(async () => {
    listener?.kill();
    await listener;
    for (const n of [srv, member, stranger]) await execa('ip', ['netns', 'del', n], { reject: false });
  });

  it('lets members reach the engine port and nobody else; membership changes without reloading', async () => {
    expect(await canConnect(member, '10.99.1.1')).toBe(true);
    expect(await canConnect(stranger, '10.99.2.1')).toBe(true); // no rules yet: the test can fail

    const rules = join(work, 'rules.nft');
    writeFileSync(rules, renderFirewall({ enginePorts: [50052], members: ['10.99.1.2'] }));
    await inNs(srv, 'nft', '-f', rules);
    expect(await canConnect(member, '10.99.1.1')).toBe(true);
    expect(await canConnect(stranger, '10.99.2.1')).toBe(false);

    const change = join(work, 'members.nft');
    writeFileSync(change, memberSetCommands(['10.99.2.2']));
    await inNs(srv, 'nft', '-f', change);
    expect(await canConnect(stranger, '10.99.2.1')).toBe(true);
    expect(await canConnect(member, '10.99.1.1')).toBe(false);
  }, 60_000);
});
