import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Discovery messages on the LAN, authenticated with the cluster secret (HMAC-SHA256) and
 * protected against replay: a message is accepted once, and only within a time window.
 */
export interface Announcement {
  v: 1;
  cluster: string;
  node: string;
  address: string;
  /** What the node was built or configured as. */
  configured: 'auto' | 'root' | 'worker';
  /** The root this node follows or is (persisted across reboots), if any. */
  root?: string;
  canHoldModel: boolean;
  ts: number;
  nonce: string;
}

export interface Counters {
  accepted: number;
  badTag: number;
  stale: number;
  replayed: number;
  malformed: number;
}

const canonical = (a: Omit<Announcement, never>) =>
  JSON.stringify([a.v, a.cluster, a.node, a.address, a.configured, a.root ?? null, a.canHoldModel, a.ts, a.nonce]);

export function sign(a: Omit<Announcement, 'v' | 'ts' | 'nonce'>, secret: Buffer, now = Date.now()): Buffer {
  const msg: Announcement = { v: 1, ...a, ts: now, nonce: randomBytes(12).toString('hex') };
  const tag = createHmac('sha256', secret).update(canonical(msg)).digest('hex');
  return Buffer.from(JSON.stringify({ ...msg, tag }));
}

export class AnnouncementVerifier {
  readonly counters: Counters = { accepted: 0, badTag: 0, stale: 0, replayed: 0, malformed: 0 };
  private seen = new Map<string, number>();

  constructor(
    private readonly secret: Buffer,
    private readonly cluster: string,
    private readonly windowMs = 30_000,
  ) {}

  /** The announcement if it is authentic, fresh and new; undefined (and counted) otherwise. */
  verify(datagram: Buffer, now = Date.now()): Announcement | undefined {
    let parsed: Announcement & { tag?: unknown };
    try {
      parsed = JSON.parse(datagram.toString('utf8'));
    } catch {
      this.counters.malformed++;
      return undefined;
    }
    if (typeof parsed !== 'object' || parsed === null || parsed.v !== 1 || typeof parsed.tag !== 'string' || typeof parsed.node !== 'string' || typeof parsed.nonce !== 'string' || typeof parsed.ts !== 'number') {
      this.counters.malformed++;
      return undefined;
    }
    const { tag, ...msg } = parsed;
    const expected = createHmac('sha256', this.secret).update(canonical(msg)).digest();
    const given = Buffer.from(tag, 'hex');
    if (given.length !== expected.length || !timingSafeEqual(given, expected) || msg.cluster !== this.cluster) {
      this.counters.badTag++;
      return undefined;
    }
    if (Math.abs(now - msg.ts) > this.windowMs) {
      this.counters.stale++;
      return undefined;
    }
    for (const [key, at] of this.seen) if (now - at > this.windowMs * 2) this.seen.delete(key);
    const key = `${msg.node}/${msg.nonce}`;
    if (this.seen.has(key)) {
      this.counters.replayed++;
      return undefined;
    }
    this.seen.set(key, now);
    this.counters.accepted++;
    return msg;
  }
}
