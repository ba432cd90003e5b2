import { createHmac, timingSafeEqual } from 'node:crypto';
import { isIPv4 } from './ipv4.js';

/**
 * Discovery messages on the LAN, authenticated with the cluster secret (HMAC-SHA256).
 *
 * Freshness does not trust clocks (a Pi has no battery-backed clock) and needs nothing kept
 * on disk: every agent start draws a random boot id, and a node lists in each announcement
 * the boot ids of the peers it has heard (`seen`). A receiver acts on an announcement only
 * once it names the receiver's own current boot id: no message recorded before that boot
 * can, so a replay after a restart is never acted on, however old. Within one boot of the
 * receiver, each sender's messages must keep increasing in `seq`, and a sender boot that was
 * replaced is never accepted again. An authentic announcement that does not yet name the
 * receiver's boot is "unproven": the receiver answers it (so the sender learns its boot id)
 * and otherwise ignores it.
 */
export interface Announcement {
  v: 3;
  cluster: string;
  node: string;
  hostname: string;
  /** Random per agent start. */
  boot: string;
  /**
   * Changes only when the machine restarts (from the kernel's boot id), not when the agent
   * does: a worker restarts its engine's server for a root that rebooted (the server may still
   * hold the dead root's connection), not for a root whose agent only restarted.
   */
  machineBoot?: string;
  /** Increases with every message of one boot. */
  seq: number;
  /** The node's IPv4 addresses on the LAN (the engine-port firewall admits them). */
  addresses: string[];
  /** What the node was built or configured as. */
  configured: 'auto' | 'root' | 'worker';
  role: 'undecided' | 'root' | 'worker';
  /** The root this node follows or is (persisted across reboots), if any. */
  root?: string;
  /** The failover term of that root: 0 at first, one more each time a lost root is replaced. */
  term?: number;
  canHoldModel: boolean;
  engine: EngineState;
  /**
   * While the engine is ready: which run of it (the engine unit's invocation). A root restarts
   * its engine when a worker's run changes (a worker's engine server that restarted lost the
   * root's connection and the layers it held), not when only the worker's agent restarted.
   */
  engineRun?: string;
  /** A root: the workers (`node@boot`) its engine runs with. A worker knows from this that it was heard. */
  serving?: string[];
  /** Boot ids of the peers this node has heard: the proof that this message is not older than them. */
  seen: string[];
  /** The agent is stopping: peers drop it from their member sets now. */
  leaving?: boolean;
}

export type EngineState = 'stopped' | 'starting' | 'ready' | 'failed';

export interface Counters {
  accepted: number;
  /** Authentic, but not naming this node's boot yet: answered, not acted on. */
  unproven: number;
  /** Wrong secret or tampered. */
  badTag: number;
  replayed: number;
  malformed: number;
  /** Authentic, but for another cluster name under the same secret. */
  otherCluster: number;
  /** Dropped before any parsing: too large, or too many from one address. */
  flood: number;
  /** New nodes refused because the peer table is full. */
  tooMany: number;
}

/** Larger datagrams are dropped unread: a real announcement of an 8-node cluster is < 1 KiB. */
export const MAX_DATAGRAM = 2048;
/** Nodes one agent keeps track of; a real cluster has 2–8. */
export const MAX_PEERS = 64;
/** Unproven boot ids remembered per peer (the newest), besides the proven one. */
const CANDIDATE_BOOTS = 3;

const tagOf = (payload: string, secret: Buffer) => createHmac('sha256', secret).update(payload).digest();

/** The datagram: the payload as sent (so nothing depends on re-serialising JSON) and its tag. */
export function sign(a: Omit<Announcement, 'v'>, secret: Buffer): Buffer {
  const payload = JSON.stringify({ v: 3, ...a });
  return Buffer.from(JSON.stringify({ payload, tag: tagOf(payload, secret).toString('hex') }));
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$/;
const isName = (x: unknown): x is string => typeof x === 'string' && NAME.test(x);
const isList = (x: unknown, max: number, item: (y: unknown) => boolean) => Array.isArray(x) && x.length <= max && x.every(item);
const oneOf = <T extends string>(x: unknown, values: readonly T[]): x is T => typeof x === 'string' && (values as readonly string[]).includes(x);

/**
 * The announcement in an authentic payload, if every field has the shape it must have. Checked
 * whole, because its values reach nftables rules, host names and the engine's command line.
 */
export function parseAnnouncement(payload: string): Announcement | undefined {
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(payload) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return undefined;
  const shaped =
    m.v === 3 &&
    isName(m.cluster) &&
    isName(m.node) &&
    isName(m.hostname) &&
    isName(m.boot) &&
    (m.machineBoot === undefined || isName(m.machineBoot)) &&
    Number.isSafeInteger(m.seq) &&
    (m.seq as number) > 0 &&
    isList(m.addresses, 8, isIPv4 as (y: unknown) => boolean) &&
    oneOf(m.configured, ['auto', 'root', 'worker'] as const) &&
    oneOf(m.role, ['undecided', 'root', 'worker'] as const) &&
    (m.root === undefined || isName(m.root)) &&
    (m.term === undefined || (Number.isSafeInteger(m.term) && (m.term as number) >= 0)) &&
    typeof m.canHoldModel === 'boolean' &&
    oneOf(m.engine, ['stopped', 'starting', 'ready', 'failed'] as const) &&
    (m.engineRun === undefined || isName(m.engineRun)) &&
    (m.serving === undefined || isList(m.serving, MAX_PEERS, isName)) &&
    isList(m.seen, MAX_PEERS * (CANDIDATE_BOOTS + 1), isName) &&
    (m.leaving === undefined || typeof m.leaving === 'boolean');
  return shaped ? (m as unknown as Announcement) : undefined;
}

export type Verdict = { fresh: 'proven'; announcement: Announcement } | { fresh: 'unproven'; announcement: Announcement } | undefined;

interface PeerRecord {
  /** The boot acted on, with its last sequence number. */
  proven?: { boot: string; seq: number };
  /** Boots this node has heard authentic words from, newest first: named in `seen`. */
  candidates: string[];
  /** Boots replaced during this boot of the receiver: never accepted again. */
  superseded: Set<string>;
}

export class AnnouncementVerifier {
  readonly counters: Counters = { accepted: 0, unproven: 0, badTag: 0, replayed: 0, malformed: 0, otherCluster: 0, flood: 0, tooMany: 0 };
  private readonly peers = new Map<string, PeerRecord>();

  constructor(
    private readonly secret: Buffer,
    private readonly cluster: string,
    /** This agent start's boot id: a peer's message is acted on only once it names it. */
    private readonly ownBoot: string,
  ) {}

  /** What this node puts in `seen`: every boot id it could be asked to prove it has heard. */
  seenBoots(): string[] {
    return [...this.peers.values()].flatMap((p) => [...(p.proven ? [p.proven.boot] : []), ...p.candidates.filter((b) => b !== p.proven?.boot)]);
  }

  /** Forgets a peer that said it is leaving (its next boot starts over as unproven). */
  forget(node: string): void {
    this.peers.delete(node);
  }

  /** Whether to act on the datagram (proven), only answer it (unproven) or drop it (undefined, counted). */
  verify(datagram: Buffer): Verdict {
    if (datagram.length > MAX_DATAGRAM) {
      this.counters.flood++;
      return undefined;
    }
    let outer: unknown;
    try {
      outer = JSON.parse(datagram.toString('utf8'));
    } catch {
      this.counters.malformed++;
      return undefined;
    }
    const { payload, tag } = (typeof outer === 'object' && outer !== null ? outer : {}) as { payload?: unknown; tag?: unknown };
    if (typeof payload !== 'string' || typeof tag !== 'string' || !/^[0-9a-f]{64}$/.test(tag)) {
      this.counters.malformed++;
      return undefined;
    }
    if (!timingSafeEqual(Buffer.from(tag, 'hex'), tagOf(payload, this.secret))) {
      this.counters.badTag++;
      return undefined;
    }
    const msg = parseAnnouncement(payload);
    if (!msg) {
      this.counters.malformed++;
      return undefined;
    }
    if (msg.cluster !== this.cluster) {
      this.counters.otherCluster++;
      return undefined;
    }
    return this.judge(msg);
  }

  private judge(msg: Announcement): Verdict {
    let peer = this.peers.get(msg.node);
    if (!peer) {
      if (this.peers.size >= MAX_PEERS) {
        this.counters.tooMany++;
        return undefined;
      }
      peer = { candidates: [], superseded: new Set() };
      this.peers.set(msg.node, peer);
    }
    if (peer.superseded.has(msg.boot) || (peer.proven?.boot === msg.boot && msg.seq <= peer.proven.seq)) {
      this.counters.replayed++;
      return undefined;
    }
    if (!msg.seen.includes(this.ownBoot)) {
      // Authentic but maybe recorded long ago: remember its boot (so our answer names it), act on nothing.
      if (msg.boot !== peer.proven?.boot) peer.candidates = [msg.boot, ...peer.candidates.filter((b) => b !== msg.boot)].slice(0, CANDIDATE_BOOTS);
      this.counters.unproven++;
      return { fresh: 'unproven', announcement: msg };
    }
    if (peer.proven && peer.proven.boot !== msg.boot) {
      peer.superseded.add(peer.proven.boot);
      if (peer.superseded.size > 1024) peer.superseded.delete(peer.superseded.values().next().value as string);
    }
    peer.proven = { boot: msg.boot, seq: msg.seq };
    peer.candidates = peer.candidates.filter((b) => b !== msg.boot);
    this.counters.accepted++;
    return { fresh: 'proven', announcement: msg };
  }
}
