import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect, type AddressInfo, type NetConnectOpts, type Server, type Socket } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSIDE_RELAY, relayIntoNamespace, relayServer } from '../../../../src/host/emulate/port-relay.js';

// Large enough to take many TCP segments and several reads on the way back.
const BODY_JS = "'answer '.repeat(40000)"; // also run by the server inside the namespace
const BODY = 'answer '.repeat(40000);

const REQUEST = 'GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';

/**
 * A client that sends its request and then shuts down its sending side (FIN), as `nc -N`
 * and many one-shot clients do. Resolves with everything it received once the other side
 * ends the connection.
 */
function askHalfClosed(target: NetConnectOpts): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ ...target, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no end of the answer within 5 s; got ${Buffer.concat(chunks).length} bytes`));
    }, 5000);
    socket.on('connect', () => {
      socket.write(REQUEST);
      socket.end();
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString());
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

function expectFullAnswer(answer: string): void {
  expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
  expect(answer.slice(answer.indexOf('\r\n\r\n') + 4)).toBe(BODY);
}

const listen = (server: Server, ...args: unknown[]) =>
  new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    (server.listen as (...a: unknown[]) => void)(...args, () => resolve());
  });

const close = (server: Server) => new Promise((r) => server.close(r));

/** A tiny HTTP server answering BODY, like the node's API front. */
function httpServer(): Server {
  return createHttpServer((_req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(BODY);
  });
}

describe('port relay of `pi-image emulate`', () => {
  let http: Server;
  let httpPort: number;
  const dir = { path: '' };

  beforeAll(async () => {
    http = httpServer();
    await listen(http, 0, '127.0.0.1');
    httpPort = (http.address() as AddressInfo).port;
    dir.path = await mkdtemp(join(tmpdir(), 'port-relay-test-'));
  });
  afterAll(async () => {
    await close(http);
    await rm(dir.path, { recursive: true, force: true });
  });

  it('the server answers a half-closed client directly (the baseline)', async () => {
    expectFullAnswer(await askHalfClosed({ port: httpPort, host: '127.0.0.1' }));
  });

  it("the host side passes a client's half-close on and brings the whole answer back", async () => {
    const closed: Promise<unknown>[] = [];
    const relay = relayServer({ port: httpPort, host: '127.0.0.1' }, (s) => closed.push(new Promise((r) => s.once('close', r))));
    await listen(relay, 0, '127.0.0.1');
    try {
      expectFullAnswer(await askHalfClosed({ port: (relay.address() as AddressInfo).port, host: '127.0.0.1' }));
      // Both directions ended: the relay's two sockets close by themselves (none left half open).
      expect(closed).toHaveLength(2);
      await Promise.all(closed);
    } finally {
      await close(relay);
    }
  });

  it('the side inside the namespace does too (its program run here, unix socket to loopback)', async () => {
    const inside = spawn(process.execPath, ['-e', INSIDE_RELAY], {
      env: { ...process.env, RELAY_DIR: dir.path, RELAY_PORTS: String(httpPort) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await readyLine(inside);
      expectFullAnswer(await askHalfClosed({ path: join(dir.path, `${httpPort}.sock`) }));
    } finally {
      inside.kill();
    }
  });

  it('still relays an ordinary client that keeps its side open, and cuts both sockets when one side fails', async () => {
    const sockets: Socket[] = [];
    const relay = relayServer({ port: httpPort, host: '127.0.0.1' }, (s) => sockets.push(s));
    await listen(relay, 0, '127.0.0.1');
    try {
      const res = await fetch(`http://127.0.0.1:${(relay.address() as AddressInfo).port}/`);
      expect(await res.text()).toBe(BODY);
      expect(sockets).toHaveLength(2);
      // fetch keeps the connection alive: an error on the inner side must close the client's too.
      const [client, inner] = sockets as [Socket, Socket];
      const clientClosed = new Promise((r) => client.once('close', r));
      inner.destroy(new Error('the node went away'));
      await clientClosed;
    } finally {
      await close(relay);
    }
  });

  // The whole relay as `pi-image emulate` runs it: a real network namespace, the HTTP server
  // inside it on the namespace's loopback, the host side on the host's loopback. Needs root.
  const canNetns = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0;
  it('end to end through a network namespace: a half-closed client gets the whole answer', async () => {
    if (!canNetns) throw new Error('this test needs root and `ip netns` (run it as root, as scripts/test does)');
    const ns = `pi-image-relay-test-${process.pid}`;
    const ip = (...args: string[]) => {
      const r = spawnSync('ip', args, { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
    };
    ip('netns', 'add', ns);
    let server: ChildProcess | undefined;
    let relay: Awaited<ReturnType<typeof relayIntoNamespace>> | undefined;
    try {
      ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
      // A free port on the host's loopback, for both the host side and the server inside.
      const probe = createServer();
      await listen(probe, 0, '127.0.0.1');
      const port = (probe.address() as AddressInfo).port;
      await close(probe);
      server = spawn(
        'ip',
        ['netns', 'exec', ns, process.execPath, '-e', `require('node:http').createServer((q, s) => s.end(${BODY_JS})).listen(${port}, '127.0.0.1', () => console.log('ready'))`],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      await readyLine(server);
      relay = await relayIntoNamespace({ wrapper: ['ip', 'netns', 'exec', ns], dir: dir.path, ports: [port] });
      expectFullAnswer(await askHalfClosed({ port, host: '127.0.0.1' }));
    } finally {
      await relay?.close();
      server?.kill();
      spawnSync('ip', ['netns', 'del', ns]);
    }
  });
});

function readyLine(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`exited (${code}) before it was ready`)));
  });
}
