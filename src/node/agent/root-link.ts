import { createServer, connect, type Server, type Socket } from 'node:net';
import { ROOT_LINK_PORT } from '../../shared/ports.js';

/** Idle time before the kernel probes a silent link; with the image's keepalive sysctls a dead peer is noticed ~25 s later. */
const KEEPALIVE_IDLE_MS = 10_000;
/** Links one agent accepts (a cluster has at most a handful of workers). */
const MAX_LINKS = 64;

/**
 * The TCP link each worker holds to its root's agent. Nothing is sent over it: the kernel's
 * keepalive probes (no timer in the agent) notice a root whose board died, and a stopping
 * agent closes it. Either way the worker hears of it as one event, instead of polling while
 * the cluster serves.
 */
export class RootLink {
  private server?: Server;
  private held?: { key: string; socket: Socket };

  constructor(
    /** The link to this node dropped without us closing it. */
    private readonly onLost: (node: string) => void,
    private readonly log: (line: string) => void,
    private readonly port = ROOT_LINK_PORT,
  ) {}

  /** Accepts the links of this node's workers (every agent does: any node may become root). */
  async listen(): Promise<void> {
    const server = createServer((socket) => {
      socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
      socket.on('error', () => socket.destroy());
      socket.resume(); // whatever arrives is ignored
    });
    server.maxConnections = MAX_LINKS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, () => resolve());
    });
    this.server = server;
  }

  /** Holds a link to `to` (closing any other), or none. */
  hold(to?: { node: string; address: string }): void {
    const key = to && `${to.node}@${to.address}`;
    if (key === this.held?.key) return;
    this.held?.socket.destroy();
    this.held = undefined;
    if (!to || !key) return;
    const socket = connect({ host: to.address, port: this.port });
    socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
    socket.resume();
    const held = { key, socket };
    this.held = held;
    const lost = (why: string) => {
      if (this.held !== held) return; // closed by us
      this.held = undefined;
      this.log(`link to the root ${to.node} (${to.address}) dropped: ${why}`);
      this.onLost(to.node);
    };
    socket.on('error', (e) => lost(e.message));
    socket.on('close', () => lost('closed'));
  }

  close(): void {
    this.held?.socket.destroy();
    this.held = undefined;
    this.server?.close();
  }
}
