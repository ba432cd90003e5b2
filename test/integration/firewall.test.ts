import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FirewallSet, type NftScript } from '../../src/node/agent/firewall-set.js';
import { memberSetCommands, renderFirewall } from '../../src/node/cluster/firewall.js';
import { run } from '../../src/node/sys.js';
import { REPO } from '../helpers/cli.js';

/**
 * The engine-port firewall with the real nftables, in network namespaces made for the test:
 * a node ("srv") with two engine ports (an HTTP server, and an echo server to see whether a
 * connection still carries data), a cluster member ("member") and a stranger on the same
 * network ("stranger"). No host network is touched: FirewallSet's nft runs inside "srv" too.
 */
const ns = (name: string) => `pi-fw-${process.pid}-${name}`;
const srv = ns('srv');
const member = ns('member');
const stranger = ns('stranger');
const work = mkdtempSync(join(tmpdir(), 'pi-image-fw-'));

const inNs = (name: string, ...cmd: string[]) => execa('ip', ['netns', 'exec', name, ...cmd]);
/** FirewallSet's nft, run in a namespace. */
const nftIn = (name: string): NftScript => (script) => run('ip', ['netns', 'exec', name, 'nft', '-f', '-'], { input: script });

/** A second engine port whose server echoes lines: to see whether a connection still carries data. */
const ECHO_PORT = 50053;
const ECHO_SERVER = `
import socketserver
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", ${ECHO_PORT}), Echo).serve_forever()
`;
/** Sends each line of its input over one connection; prints whether the echo came back. */
const ECHO_CLIENT = `
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.settimeout(3)
print("connected", flush=True)
for line in sys.stdin:
    s.sendall(line.encode())
    try:
        print("echo" if s.recv(100) == line.encode() else "wrong", flush=True)
    except socket.timeout:
        print("timeout", flush=True)
`;

async function canConnect(from: string, address: string, port = 50052): Promise<boolean> {
  const r = await execa('ip', ['netns', 'exec', from, 'python3', '-c', `import socket; socket.create_connection(("${address}", ${port}), timeout=2)`], { reject: false });
  return r.exitCode === 0;
}

/** One long-lived connection from a namespace; `send` answers whether the data went through and came back. */
async function openConnection(from: string, address: string, port: number) {
  const client = execa('ip', ['netns', 'exec', from, 'python3', '-c', ECHO_CLIENT, address, String(port)], { reject: false, stdin: 'pipe', buffer: false });
  const replies: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  let partial = '';
  client.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) (waiting.shift() ?? ((l: string) => replies.push(l)))(line);
  });
  const next = () => new Promise<string>((resolve) => (replies.length ? resolve(replies.shift() as string) : waiting.push(resolve)));
  expect(await next()).toBe('connected');
  return {
    send: async (text: string) => {
      client.stdin?.write(`${text}\n`);
      return (await next()) === 'echo';
    },
    close: async () => {
      client.stdin?.end();
      await client;
    },
  };
}

function writeRules(name: string, text: string): string {
  const path = join(work, name);
  writeFileSync(path, text);
  return path;
}

/** Every test starts from a node with no rules at all. */
const flushRuleset = () => inNs(srv, 'nft', 'flush', 'ruleset');

describe('engine port firewall (nftables, network namespaces)', () => {
  let listener: ResultPromise;
  let echo: ResultPromise;

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
    echo = execa('ip', ['netns', 'exec', srv, 'python3', '-c', ECHO_SERVER], { reject: false });
    await new Promise((r) => setTimeout(r, 1000));
  });

  afterAll(async () => {
    for (const server of [listener, echo]) {
      server?.kill();
      await server;
    }
    for (const n of [srv, member, stranger]) await execa('ip', ['netns', 'del', n], { reject: false });
  });

  it('lets members reach the engine port and nobody else; membership changes without reloading', async () => {
    await flushRuleset();
    expect(await canConnect(member, '10.99.1.1')).toBe(true);
    expect(await canConnect(stranger, '10.99.2.1')).toBe(true); // no rules yet: the test can fail

    await inNs(srv, 'nft', '-f', writeRules('rules.nft', renderFirewall({ enginePorts: [50052], members: ['10.99.1.2'] })));
    expect(await canConnect(member, '10.99.1.1')).toBe(true);
    expect(await canConnect(stranger, '10.99.2.1')).toBe(false);

    await inNs(srv, 'nft', '-f', writeRules('members.nft', memberSetCommands(['10.99.2.2'])));
    expect(await canConnect(stranger, '10.99.2.1')).toBe(true);
    expect(await canConnect(member, '10.99.1.1')).toBe(false);
  }, 60_000);

  it('keeps a connection admitted before the whole table is reloaded with fewer members (an agent restart)', async () => {
    await flushRuleset();
    const ports = [50052, ECHO_PORT];
    await inNs(srv, 'nft', '-f', writeRules('first.nft', renderFirewall({ enginePorts: ports, members: ['10.99.1.2'] })));
    const connection = await openConnection(member, '10.99.1.1', ECHO_PORT);
    try {
      expect(await connection.send('before the reload')).toBe(true);
      // What the agent loads when it starts again: the whole table, nobody in the set yet.
      await inNs(srv, 'nft', '-f', writeRules('restart.nft', renderFirewall({ enginePorts: ports, members: [] })));
      expect(await connection.send('after the reload')).toBe(true);
      expect(await canConnect(member, '10.99.1.1', ECHO_PORT)).toBe(false);
      expect(await canConnect(stranger, '10.99.2.1', ECHO_PORT)).toBe(false);
    } finally {
      await connection.close();
    }
  }, 60_000);

  it('FirewallSet puts the whole table back when it was flushed away (nft flush ruleset, nftables.service)', async () => {
    await flushRuleset();
    const lines: string[] = [];
    const firewall = new FirewallSet([50052], (line) => lines.push(line), nftIn(srv));
    await firewall.apply([]);
    await firewall.apply(['10.99.1.2']);
    expect(await canConnect(stranger, '10.99.2.1')).toBe(false);

    await flushRuleset();
    expect(await canConnect(stranger, '10.99.2.1')).toBe(true); // the hole: the port is open to all

    await firewall.apply(['10.99.1.2']);
    expect(await canConnect(stranger, '10.99.2.1')).toBe(false);
    expect(await canConnect(member, '10.99.1.1')).toBe(true);
    expect(lines.join('\n')).toMatch(/firewall: could not update the member set .*; loading the whole table again/);

    // And from then on the set changes as before.
    await firewall.apply(['10.99.2.2']);
    expect(await canConnect(stranger, '10.99.2.1')).toBe(true);
    expect(await canConnect(member, '10.99.1.1')).toBe(false);
  }, 60_000);

  it('the engine unit starts only when the table is there (its ExecStartPre, run with the real nft)', async () => {
    const unit = readFileSync(join(REPO, 'image/layers/engine/overlay/usr/lib/systemd/system/pi-image-engine.service'), 'utf8');
    const checks = [...unit.matchAll(/^ExecStartPre=(.*)$/gm)].map((m) => m[1] as string);
    const check = checks.find((c) => c.includes('pi_image'));
    // Only the "+" prefix (this check runs privileged; the engine does not), no "-": a failing
    // check fails the start. An absolute path: what systemd runs is not looked up.
    expect(check).toMatch(/^\+\/usr\/sbin\/nft /);
    const argv = (check as string).slice(1).split(/\s+/);

    await flushRuleset();
    expect((await execa('ip', ['netns', 'exec', srv, ...argv], { reject: false })).exitCode).not.toBe(0);
    await inNs(srv, 'nft', '-f', writeRules('unit.nft', renderFirewall({ enginePorts: [50052], members: [] })));
    expect((await execa('ip', ['netns', 'exec', srv, ...argv], { reject: false })).exitCode).toBe(0);
  }, 60_000);
});

describe('FirewallSet when nft keeps failing', () => {
  it('tries the whole table after a failed set update, and throws when that fails too', async () => {
    const scripts: string[] = [];
    const results = [0, 1, 1];
    const nft: NftScript = async (script) => {
      scripts.push(script);
      return { code: results.shift() ?? 1, stdout: '', stderr: 'Error: No such file or directory', missing: false };
    };
    const lines: string[] = [];
    const firewall = new FirewallSet([50052], (line) => lines.push(line), nft);
    await firewall.apply([]);
    await expect(firewall.apply(['10.99.1.2'])).rejects.toThrow(/nft could not load the engine-port firewall .*No such file or directory/);
    expect(scripts.map((s) => (s.startsWith('flush set') ? 'set' : 'table'))).toEqual(['table', 'set', 'table']);
    // Still not trusted: the next change loads the whole table again.
    results.push(0);
    await firewall.apply(['10.99.1.2']);
    expect(scripts.at(-1)).toContain('delete table inet pi_image');
  });
});
