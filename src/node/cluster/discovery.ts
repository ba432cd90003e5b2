import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { lanAddresses, sameSubnet } from '../identity.js';
import { AnnouncementVerifier, sign, type Announcement, type Counters } from '../../shared/discovery-protocol.js';

export type OwnState = Omit<Announcement, 'v' | 'boot' | 'seq' | 'addresses' | 'seen' | 'leaving'>;

/** Datagrams one address may send in a burst, and per second after it: a real peer sends a handful a minute. */
const BURST = 20;
const PER_SECOND = 10;
/** Addresses the rate limiter tracks (spoofed sources must not grow the agent's memory). */
const TRACKED_SOURCES = 256;
/** At most one answer per second to a peer's unproven announcements (replays must not make a broadcast storm). */
const ANSWER_INTERVAL_MS = 1000;
/** How long the LAN's addresses are trusted before asking the kernel again (not per datagram). */
const LAN_CACHE_MS = 1000;

/** A token bucket per source address, with a bounded table. */
class SourceLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  allow(source: string, now: number): boolean {
    let b = this.buckets.get(source);
    if (!b) {
      if (this.buckets.size >= TRACKED_SOURCES) this.buckets.delete(this.buckets.keys().next().value as string);
      b = { tokens: BURST, at: now };
      this.buckets.set(source, b);
    }
    b.tokens = Math.min(BURST, b.tokens + ((now - b.at) / 1000) * PER_SECOND);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens--;
    return true;
  }
}

/**
 * Authenticated announcements over UDP broadcast on every LAN interface. Event driven: a node
 * announces when its state changes and answers a peer it has not heard from in this boot
 * (a new or restarted node), so a quiet cluster sends nothing. While a node is still
 * assembling (`eager`), it repeats its announcement with back-off against lost datagrams.
 * Nothing a datagram holds can throw out of the listener or grow memory without bound.
 */
export class Discovery {
  private socket?: Socket;
  private readonly boot: string;
  private seq = 0;
  private readonly verifier: AnnouncementVerifier;
  private readonly heardBoots = new Map<string, string>();
  private readonly limiter = new SourceLimiter();
  private readonly answered = new Map<string, number>();
  private lan: { at: number; addresses: ReturnType<typeof lanAddresses> } = { at: -Infinity, addresses: [] };
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
      /** A peer's agent said it is stopping. */
      onLeft: (node: string) => void;
      /** Whether a settled node answers this peer's repeated announcement (the peer waits for word from it). */
      shouldAnswer: (peer: Announcement) => boolean;
      log: (line: string) => void;
      /** The LAN's addresses (tests give their own). */
      lanAddresses?: typeof lanAddresses;
      now?: () => number;
      /** Sends a datagram instead of broadcasting it on the socket, and no repeat timer runs (tests). */
      transmit?: (datagram: Buffer) => void;
      bootId?: string;
    },
  ) {
    this.boot = opts.bootId ?? randomBytes(8).toString('hex');
    this.verifier = new AnnouncementVerifier(opts.secret, opts.cluster, this.boot);
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

  /** Tells the peers this agent stops (they drop it from their firewalls), then closes. */
  async leave(): Promise<void> {
    clearTimeout(this.repeatTimer);
    // Best effort: a stop must not hang on a LAN that is gone.
    await Promise.race([Promise.all(this.send(true)), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    this.socket?.close();
    this.socket = undefined;
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
    if (eager && !this.opts.transmit) this.scheduleRepeat();
  }

  /** Broadcasts this node's current state on every LAN interface. */
  announce(): void {
    void this.send(false);
    if (this.eager && !this.opts.transmit) this.scheduleRepeat();
  }

  /** The datagram this node would send now (also what the tests feed to another node). */
  datagram(leaving = false): Buffer {
    const addresses = this.lanNow().map((a) => a.address);
    return sign({ ...this.opts.state(), boot: this.boot, seq: ++this.seq, addresses, seen: this.verifier.seenBoots(), ...(leaving ? { leaving } : {}) }, this.opts.secret);
  }

  private send(leaving: boolean): Promise<void>[] {
    const message = this.datagram(leaving);
    if (this.opts.transmit) return [Promise.resolve(this.opts.transmit(message))];
    return [...new Set(this.lanNow().map((a) => a.broadcast))].map(
      (target) => new Promise<void>((resolve) => (this.socket ? this.socket.send(message, this.opts.port, target, () => resolve()) : resolve())),
    );
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private lanNow(): ReturnType<typeof lanAddresses> {
    const now = this.now();
    if (now - this.lan.at >= LAN_CACHE_MS) this.lan = { at: now, addresses: (this.opts.lanAddresses ?? lanAddresses)() };
    return this.lan.addresses;
  }

  private scheduleRepeat(): void {
    clearTimeout(this.repeatTimer);
    this.repeatTimer = setTimeout(() => {
      this.repeatDelay = Math.min(this.repeatDelay * 2, 30_000);
      this.announce();
    }, this.repeatDelay);
  }

  /** One datagram off the socket. Never throws: a bug here must not stop the agent. */
  receive(datagram: Buffer, from: string): void {
    try {
      this.handle(datagram, from);
    } catch (e) {
      this.counters.malformed++;
      this.opts.log(`discovery: dropped a datagram from ${from}: ${(e as Error).message}`);
    }
  }

  private handle(datagram: Buffer, from: string): void {
    if (!this.limiter.allow(from, this.now())) {
      this.counters.flood++;
      return;
    }
    const lan = this.lanNow();
    if (lan.some((a) => a.address === from)) return; // our own broadcast
    const verdict = this.verifier.verify(datagram);
    if (!verdict) return;
    const peer = verdict.announcement;
    if (peer.node === this.opts.state().node) return;
    // The sender's address must be one it signed, on one of our subnets; it comes first: that is
    // where this node reaches it. Other addresses it signed count only on our subnets too.
    const local = (a: string) => lan.some((l) => sameSubnet(a, l.address, l.netmask));
    if (!peer.addresses.includes(from) || !local(from)) return;
    peer.addresses = [from, ...peer.addresses.filter((a) => a !== from && local(a))];
    if (verdict.fresh === 'unproven') {
      // It may be a replay; if it is real, our answer names its boot and its next words prove it.
      const last = this.answered.get(peer.node) ?? -Infinity;
      if (this.now() - last >= ANSWER_INTERVAL_MS && !peer.leaving) {
        this.answered.set(peer.node, this.now());
        this.announce();
      }
      return;
    }
    if (peer.leaving) {
      this.verifier.forget(peer.node);
      this.heardBoots.delete(peer.node);
      this.answered.delete(peer.node);
      this.opts.onLeft(peer.node);
      return;
    }
    const fresh = this.heardBoots.get(peer.node) !== peer.boot;
    this.heardBoots.set(peer.node, peer.boot);
    this.opts.onPeer(peer, fresh);
    // A node we have not heard in this boot does not know us yet: tell it. A node still waiting
    // may have missed our last word (UDP): a settled node answers each of its repeats.
    if (fresh || (!this.eager && this.opts.shouldAnswer(peer))) this.announce();
  }
}
