import { createServer, connect, type NetConnectOpts, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { startTool } from '../tools/run.js';

/*
 * QEMU runs inside the LAN's network namespace, so its user-network port forwards listen on
 * the namespace's loopback, not the host's. This relays host 127.0.0.1:<port> to the same
 * port inside the namespace through unix sockets (files, which both sides see): a small
 * Node process inside the namespace connects to the forward, the host side accepts. No
 * interface or route joins the namespace to the host.
 *
 * Both sides keep a half-closed connection open (allowHalfOpen): a client that sends its
 * request and then shuts down its sending side (FIN) still gets its answer, and the server's
 * end reaches the client the same way.
 */

/**
 * Joins two connected sockets both ways. Each direction ends on its own: when `a` has sent
 * all it will (its readable side ended), `b` is ended, and the other way round; the way back
 * stays open until its own sender ends. An error on either side cuts both.
 *
 * Both sockets must be made with `allowHalfOpen: true`, or Node ends a socket's writing side
 * as soon as its reading side ends, and the answer is lost.
 *
 * Self-contained (no imports, no closures): its source text is also the piping of the
 * relay's inside process (INSIDE_RELAY).
 */
export function pipeBoth(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
}

/** The program run inside the namespace: one unix socket per port, each relayed to 127.0.0.1:<port> there. */
export const INSIDE_RELAY = `
const net = require('node:net');
const { join } = require('node:path');
const pipeBoth = ${pipeBoth.toString()};
for (const port of process.env.RELAY_PORTS.split(',').map(Number)) {
  net.createServer({ allowHalfOpen: true }, (c) => {
    pipeBoth(c, net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }));
  }).listen(join(process.env.RELAY_DIR, port + '.sock'));
}
process.stdout.write('ready\\n');
`;

/** A server that relays each connection to `target`, half-closes included; `onSocket` sees both sockets of each. */
export function relayServer(target: NetConnectOpts, onSocket: (socket: Socket) => void = () => {}): Server {
  return createServer({ allowHalfOpen: true }, (client) => {
    const inner = connect({ ...target, allowHalfOpen: true });
    onSocket(client);
    onSocket(inner);
    pipeBoth(client, inner);
  });
}

export async function relayIntoNamespace(opts: { wrapper: string[]; dir: string; ports: number[] }): Promise<{ close(): Promise<void> }> {
  const [cmd, ...pre] = opts.wrapper;
  const inside = startTool(cmd as string, [...pre, process.execPath, '-e', INSIDE_RELAY], {
    env: { RELAY_DIR: opts.dir, RELAY_PORTS: opts.ports.join(',') },
    stderr: 'inherit',
  });
  await new Promise<void>((resolve, reject) => {
    inside.stdout?.once('data', () => resolve());
    void inside.ended.then((r) => reject(new Error(`the port relay inside the LAN namespace exited (${r.exitCode})`)));
  });
  const servers: Server[] = [];
  // Clients keep connections alive (fetch does): closing must cut them, or close() never returns.
  const open = new Set<Socket>();
  const track = (socket: Socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
  };
  try {
    for (const port of opts.ports) {
      const server = relayServer({ path: join(opts.dir, `${port}.sock`) }, track);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => resolve());
      });
      servers.push(server);
    }
  } catch (e) {
    inside.kill();
    servers.forEach((s) => s.close());
    throw new Error(`cannot listen on 127.0.0.1:${opts.ports.join(', ')} for the nodes' forwarded ports: ${(e as Error).message}`);
  }
  return {
    close: async () => {
      const closed = Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      for (const socket of open) socket.destroy();
      await closed;
      inside.kill();
      await inside.ended;
    },
  };
}
