import { execa, type ResultPromise } from 'execa';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';

/**
 * QEMU runs inside the LAN's network namespace, so its user-network port forwards listen on
 * the namespace's loopback, not the host's. This relays host 127.0.0.1:<port> to the same
 * port inside the namespace through unix sockets (files, which both sides see): a small
 * Node process inside the namespace connects to the forward, the host side accepts. No
 * interface or route joins the namespace to the host.
 */
const INSIDE = `
const net = require('node:net');
const { join } = require('node:path');
for (const port of process.env.RELAY_PORTS.split(',').map(Number)) {
  net.createServer((c) => {
    const t = net.connect(port, '127.0.0.1');
    c.pipe(t).pipe(c);
    c.on('error', () => t.destroy());
    t.on('error', () => c.destroy());
  }).listen(join(process.env.RELAY_DIR, port + '.sock'));
}
process.stdout.write('ready\\n');
`;

const pipeBoth = (a: Socket, b: Socket) => {
  a.pipe(b).pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
};

export async function relayIntoNamespace(opts: { wrapper: string[]; dir: string; ports: number[] }): Promise<{ close(): Promise<void> }> {
  const [cmd, ...pre] = opts.wrapper;
  const inside: ResultPromise = execa(cmd as string, [...pre, process.execPath, '-e', INSIDE], {
    env: { RELAY_DIR: opts.dir, RELAY_PORTS: opts.ports.join(',') },
    stdout: 'pipe',
    stderr: 'inherit',
    reject: false,
    buffer: false,
  });
  await new Promise<void>((resolve, reject) => {
    inside.stdout?.once('data', () => resolve());
    void inside.then((r) => reject(new Error(`the port relay inside the LAN namespace exited (${r.exitCode})`)));
  });
  const servers: Server[] = [];
  // Clients keep connections alive (fetch does): closing must cut them, or close() never returns.
  const open = new Set<Socket>();
  try {
    for (const port of opts.ports) {
      const server = createServer((c) => {
        const inner = connect(join(opts.dir, `${port}.sock`));
        open.add(c).add(inner);
        c.on('close', () => open.delete(c));
        inner.on('close', () => open.delete(inner));
        pipeBoth(c, inner);
      });
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
      await inside;
    },
  };
}
