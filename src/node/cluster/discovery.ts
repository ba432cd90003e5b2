import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { lanAddresses } from '../identity.js';
import { AnnouncementVerifier, sign, type Announcement, type Counters } from '../../shared/discovery-protocol.js';

export type OwnState = Omit<Announcement, 'v' | 'boot' | 'seq' | 'addresses'>;

/**
 * Authenticated announcements over UDP broadcast on every LAN interface. Event driven: a node
 * announces when its state changes and answers a peer it has not heard from in this boot
 * (a new or restarted node), so a quiet cluster sends nothing. While a node is still
 * assembling (`eager`), it repeats its announcement with back-off against lost datagrams.
 */
export class Discovery {
  private socket?: Socket;
  private readonly boot = randomBytes(8).toString('hex');
  private seq = 0;
  private readonly verifier: AnnouncementVerifier;
  private readonly heardBoots = new Map<string, string>();
  private repeatTimer?: NodeJS.Timeout;
  private repeatDelay = 1000;
  private eager = true;

  constructor(
    private readonly opts: {
      secret: Buffer;
      cluster: string;
      port: number;
      state: () => OwnState;
      /** `peer.addresses` comes first-reordered: the address its datagram came from (the one this node reaches it at). */
      onPeer: (peer: Announcement, fresh: boolean) => void;
      /** Whether a settled node answers this peer's repeated announcement (the peer waits for word from it). */
      shouldAnswer: (peer: Announcement) => boolean;
      log: (line: string) => void;
    },
  ) {
    this.verifier = new AnnouncementVerifier(opts.secret, opts.cluster);
  }

  get counters(): Counters {
    return this.verifier.counters;
  }

  get bootId(): string {
    return this.boot;
  }

  async start(): Promise<void> {
    const socket = createSocket({ type: 'udp4', reuseAddr: true });
    this.socket = socket;
    socket.on('message', (datagram, from) => this.receive(datagram, from.address));
    socket.on('error', (e) => this.opts.log(`discovery socket: ${e.message}`));
    await new Promise<void>((resolve) => socket.bind(this.opts.port, resolve));
    socket.setBroadcast(true);
    this.announce();
  }

  stop(): void {
    clearTimeout(this.repeatTimer);
    this.socket?.close();
  }

  /** Repeat announcements (with back-off up to 30 s) while assembling; stop once settled. */
  setEager(eager: boolean): void {
    if (eager === this.eager) return;
    this.eager = eager;
    this.repeatDelay = 1000;
    clearTimeout(this.repeatTimer);
    if (eager) this.scheduleRepeat();
  }

  /** Broadcasts this node's current state on every LAN interface. */
  announce(): void {
    const addrs = lanAddresses();
    const message = sign({ ...this.opts.state(), boot: this.boot, seq: ++this.seq, addresses: addrs.map((a) => a.address) }, this.opts.secret);
    for (const target of new Set(addrs.map((a) => a.broadcast))) this.socket?.send(message, this.opts.port, target, () => undefined);
    if (this.eager) this.scheduleRepeat();
  }

  private scheduleRepeat(): void {
    clearTimeout(this.repeatTimer);
    this.repeatTimer = setTimeout(() => {
      this.repeatDelay = Math.min(this.repeatDelay * 2, 30_000);
      this.announce();
    }, this.repeatDelay);
  }

  private receive(datagram: Buffer, from: string): void {
    if (datagram.length > 8192) return;
    if (lanAddresses().some((a) => a.address === from)) return; // our own broadcast
    const peer = this.verifier.verify(datagram);
    if (!peer || peer.node === this.opts.state().node) return;
    // The sender's address must be one it signed; it comes first: that is where this node reaches it.
    if (!peer.addresses.includes(from)) return;
    peer.addresses = [from, ...peer.addresses.filter((a) => a !== from)];
    const fresh = this.heardBoots.get(peer.node) !== peer.boot;
    this.heardBoots.set(peer.node, peer.boot);
    this.opts.onPeer(peer, fresh);
    // A node we have not heard in this boot does not know us yet: tell it. A node still waiting
    // may have missed our last word (UDP): a settled node answers each of its repeats.
    if (fresh || (!this.eager && this.opts.shouldAnswer(peer))) this.announce();
  }
}
