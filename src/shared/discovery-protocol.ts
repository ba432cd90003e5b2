import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Discovery messages on the LAN, authenticated with the cluster secret (HMAC-SHA256).
 * Replay protection does not trust clocks (a Pi has no battery-backed clock and the LAN may
 * have no time server): every agent start draws a random boot id and numbers its messages;
 * a message is accepted only if it is newer than the last one seen from that boot, and a
 * boot id that was superseded is never accepted again.
 */
export interface Announcement {
  v: 2;
  cluster: string;
  node: string;
  hostname: string;
  /** Random per agent start. */
  boot: string;
  /** Increases with every message of one boot. */
  seq: number;
  /** The node's IPv4 addresses on the LAN (members of the engine-port firewall set). */
  addresses: string[];
  /** What the node was built or configured as. */
  configured: 'auto' | 'root' | 'worker';
  role: 'undecided' | 'root' | 'worker';
  /** The root this node follows or is (persisted across reboots), if any. */
  root?: string;
  canHoldModel: boolean;
  engine: EngineState;
  /** A root: the workers (`node@boot`) its engine runs with. A worker knows from this that it was heard. */
  serving?: string[];
}

export type EngineState = 'stopped' | 'starting' | 'ready' | 'failed';

export interface Counters {
  accepted: number;
  /** Wrong secret or tampered: the count the acceptance asks for. */
  badTag: number;
  replayed: number;
  malformed: number;
  /** Authentic, but for another cluster name under the same secret. */
  otherCluster: number;
}

const tagOf = (payload: string, secret: Buffer) => createHmac('sha256', secret).update(payload).digest();

/** The datagram: the payload as sent (so nothing depends on re-serialising JSON) and its tag. */
export function sign(a: Omit<Announcement, 'v'>, secret: Buffer): Buffer {
  const payload = JSON.stringify({ v: 2, ...a });
  return Buffer.from(JSON.stringify({ payload, tag: tagOf(payload, secret).toString('hex') }));
}

export class AnnouncementVerifier {
  readonly counters: Counters = { accepted: 0, badTag: 0, replayed: 0, malformed: 0, otherCluster: 0 };
  private latest = new Map<string, { boot: string; seq: number; superseded: Set<string> }>();

  constructor(
    private readonly secret: Buffer,
    private readonly cluster: string,
  ) {}

  /** The announcement if it is authentic and new; undefined (and counted) otherwise. */
  verify(datagram: Buffer): Announcement | undefined {
    let outer: { payload?: unknown; tag?: unknown };
    try {
      outer = JSON.parse(datagram.toString('utf8'));
    } catch {
      this.counters.malformed++;
      return undefined;
    }
    if (typeof outer !== 'object' || outer === null || typeof outer.payload !== 'string' || typeof outer.tag !== 'string') {
      this.counters.malformed++;
      return undefined;
    }
    const given = Buffer.from(outer.tag, 'hex');
    const expected = tagOf(outer.payload, this.secret);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      this.counters.badTag++;
      return undefined;
    }
    const msg = JSON.parse(outer.payload) as Announcement;
    if (msg.v !== 2 || typeof msg.node !== 'string' || typeof msg.boot !== 'string' || !Number.isInteger(msg.seq) || !Array.isArray(msg.addresses)) {
      this.counters.malformed++;
      return undefined;
    }
    if (msg.cluster !== this.cluster) {
      this.counters.otherCluster++;
      return undefined;
    }
    const last = this.latest.get(msg.node);
    if (last && (last.superseded.has(msg.boot) || (last.boot === msg.boot && msg.seq <= last.seq))) {
      this.counters.replayed++;
      return undefined;
    }
    if (last && last.boot !== msg.boot) {
      last.superseded.add(last.boot);
      if (last.superseded.size > 64) last.superseded.delete(last.superseded.values().next().value as string);
    }
    this.latest.set(msg.node, { boot: msg.boot, seq: msg.seq, superseded: last?.superseded ?? new Set() });
    this.counters.accepted++;
    return msg;
  }
}
