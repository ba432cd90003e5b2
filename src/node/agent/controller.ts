import type { Announcement, EngineState } from '../../shared/discovery-protocol.js';
import type { NodeSettings } from '../../shared/node-settings.js';
import type { OwnState } from '../cluster/discovery.js';
import { engineWorkers, nodeBoot, workerSetKey } from '../cluster/membership.js';
import { currentTerm, decideRole, type ClusterView, type Role } from '../cluster/roles.js';
import { ENGINES } from '../../shared/engines/index.js';

/**
 * The agent's decisions as a pure function: from what the node knows (its own state, the
 * peers it heard, its engine) to the actions that bring the node where it should be. The
 * effectors (engine unit, firewall, API front, mDNS, discovery, the persisted role) do the
 * I/O and report back as events; nothing here reads a clock, a file or the network.
 */
export interface AgentState {
  node: string;
  /** This agent start's boot id (discovery draws it). */
  boot: string;
  /** The machine's boot (see Announcement.machineBoot). */
  machineBoot?: string;
  hostname: string;
  cluster: string;
  size: number;
  configured: NodeSettings['role'];
  /** The image has a model and the file is on this node. */
  canHoldModel: boolean;
  /** Why a root cannot serve without a model, when it cannot. */
  modelProblem?: string;
  role: Role;
  root?: string;
  /** The failover term of `root` (see roles.ts). */
  term: number;
  engineName: NodeSettings['engine']['name'];
  /** The root this worker is waiting for (the grace timer runs), if it has gone missing. */
  grace?: string;
  /** The root this worker holds a link to (`node@address`): the link drops when the root does. */
  link?: string;
  /** The node's LAN addresses (they go into its announcements). */
  addresses: string[];
  peers: Record<string, Announcement>;
  engine: {
    state: EngineState;
    /** What the running engine was started as: 'worker@<address>', or the root's worker set key. */
    key?: string;
    /** Counts starts and stops, so the readiness of a superseded start is ignored. */
    generation: number;
    detail?: string;
    /** Which run of the engine unit is ready (announced: see Announcement.engineRun). */
    run?: string;
  };
  /** The runtime and model versions the `current` links name (the agent's key; '' without them): a change restarts the engine. */
  runtime: string;
  /** Why the engine is held stopped (an update switching the runtime or model), if it is. */
  held?: string;
  /** The engine's crashes since the agent started, and the last one: `pi-node status` shows them. */
  crashes: { count: number; last?: string };
  /** The workers the root's engine runs with. */
  workers: Announcement[];
  /** What this node last announced of itself: a change is announced at once. */
  announced?: string;
  /** The member set the firewall holds, or undefined before it was loaded. */
  firewall?: string[];
  apiFront: boolean;
}

export type Action =
  | { do: 'log'; line: string }
  | { do: 'persist-role'; role: 'root' | 'worker'; root: string; term: number }
  /** Start (root given) or cancel the grace timer for a missing root; it ends in 'grace-over'. */
  | { do: 'grace'; root?: string }
  /** Hold a TCP link (kernel keepalive) to the root's agent, or none; a drop ends in 'lost'. */
  | { do: 'link'; to?: { node: string; address: string } }
  | { do: 'stop-serving' }
  | { do: 'stop-engine' }
  | { do: 'firewall'; members: string[] }
  /**
   * `adopt`: an engine already running with the same launch line may be kept — only on this
   * agent's first start (the agent restarted, the engine did not). Any later start is for
   * something else (a worker that rebooted, another root) and restarts the engine even when
   * its launch line is the same, or it would keep talking to a peer that is gone.
   */
  | { do: 'start-worker'; generation: number; adopt: boolean }
  | { do: 'start-root'; generation: number; workers: Announcement[]; adopt: boolean }
  | { do: 'serve-api' }
  | { do: 'publish-name'; toward?: string }
  | { do: 'eager'; on: boolean }
  | { do: 'announce' };

export type AgentEvent =
  | { on: 'heard'; peer: Announcement }
  | { on: 'left'; node: string }
  /** The link to a node dropped (its board died, or its agent stopped). */
  | { on: 'lost'; node: string }
  | { on: 'grace-over'; root: string }
  | { on: 'engine'; generation: number; state: 'ready' | 'failed'; detail?: string; run?: string }
  /** The running engine exited on its own (a crash, or an exit nobody asked for): it is started again. */
  | { on: 'engine-crashed'; generation: number; what: string; at: string }
  | { on: 'addresses'; addresses: string[] }
  /** An update holds the engine stopped (reason) or lets it run again (none), on a runtime or model that may have changed. */
  | { on: 'runtime'; version: string; held?: string };

export function initialState(opts: {
  node: string;
  boot: string;
  hostname: string;
  settings: NodeSettings;
  canHoldModel: boolean;
  persisted?: { role: 'root' | 'worker'; root: string; term?: number };
  addresses: string[];
  machineBoot?: string;
  runtime?: string;
}): AgentState {
  const { settings } = opts;
  return {
    node: opts.node,
    boot: opts.boot,
    ...(opts.machineBoot ? { machineBoot: opts.machineBoot } : {}),
    hostname: opts.hostname,
    cluster: settings.cluster.name,
    size: settings.cluster.size,
    configured: settings.role,
    canHoldModel: opts.canHoldModel,
    ...(opts.canHoldModel ? {} : { modelProblem: settings.model ? `the model ${settings.model.path} is missing on this node` : 'this image has no model (build with --model)' }),
    role: opts.persisted?.role ?? 'undecided',
    ...(opts.persisted ? { root: opts.persisted.root } : {}),
    term: opts.persisted?.term ?? 0,
    engineName: settings.engine.name,
    addresses: opts.addresses,
    peers: {},
    engine: { state: 'stopped', generation: 0 },
    runtime: opts.runtime ?? '',
    crashes: { count: 0 },
    workers: [],
    apiFront: false,
  };
}

/** The state an event leaves behind (the controller then decides what to do about it). */
export function applyEvent(state: AgentState, event: AgentEvent): AgentState {
  switch (event.on) {
    case 'heard':
      return event.peer.node === state.node ? state : { ...state, peers: { ...state.peers, [event.peer.node]: event.peer } };
    case 'left':
    case 'lost': {
      const { [event.node]: _gone, ...peers } = state.peers;
      return { ...state, peers, ...(state.link?.startsWith(`${event.node}@`) ? { link: undefined } : {}) };
    }
    case 'grace-over':
      // The root stayed away too long: the next term, with no root; roles.ts elects one among those here.
      if (state.grace !== event.root || state.peers[event.root]) return state;
      return { ...state, term: state.term + 1, root: undefined, grace: undefined };
    case 'engine':
      if (event.generation !== state.engine.generation) return state;
      return { ...state, engine: { ...state.engine, state: event.state, detail: event.detail, ...(event.state === 'ready' && event.run ? { run: event.run } : {}) } };
    case 'engine-crashed': {
      if (event.generation !== state.engine.generation || (state.engine.state !== 'ready' && state.engine.state !== 'starting')) return state;
      const last = `${event.what} at ${event.at}`;
      // 'failed' makes the next pass start the engine again, as after a failed start.
      return { ...state, engine: { ...state.engine, state: 'failed', detail: `crashed: ${last}` }, crashes: { count: state.crashes.count + 1, last } };
    }
    case 'addresses':
      return { ...state, addresses: event.addresses };
    case 'runtime': {
      const { held: _was, ...rest } = state;
      return { ...rest, runtime: event.version, ...(event.held ? { held: event.held } : {}) };
    }
  }
}

/** What this node says of itself in its announcements (discovery adds boot, seq and addresses). */
export function ownAnnouncement(state: AgentState): OwnState {
  return {
    cluster: state.cluster,
    node: state.node,
    ...(state.machineBoot ? { machineBoot: state.machineBoot } : {}),
    hostname: state.hostname,
    configured: state.configured,
    role: state.role,
    ...(state.root !== undefined ? { root: state.root } : {}),
    ...(state.term ? { term: state.term } : {}),
    canHoldModel: state.canHoldModel,
    engine: state.engine.state,
    ...(state.engine.state === 'ready' && state.engine.run ? { engineRun: state.engine.run } : {}),
    ...(state.role === 'root' ? { serving: state.workers.map(nodeBoot) } : {}),
  };
}

function view(state: AgentState): ClusterView {
  return {
    self: { v: 3, ...ownAnnouncement(state), boot: state.boot, seq: 0, addresses: state.addresses, seen: [] },
    peers: Object.values(state.peers),
    size: state.size,
  };
}

/**
 * Whether this root's engine serves now: it is ready, and every worker it runs with is heard
 * ready with the very engine run it started with (a worker's engine server that stopped or
 * restarted dropped this engine's connection; the root restarts its engine before it serves again).
 */
export function engineServes(state: AgentState): boolean {
  if (state.role !== 'root' || state.engine.state !== 'ready') return false;
  return state.workers.every((w) => {
    const heard = state.peers[w.node];
    return heard?.engine === 'ready' && workerSetKey([heard]) === workerSetKey([w]);
  });
}

/**
 * Whether this node can stop repeating itself: a root once its engine serves; a worker once
 * its engine is ready and its root's engine runs with this very boot of it (so a worker whose
 * first words were lost keeps speaking until it is heard).
 */
export function settled(state: AgentState): boolean {
  if (state.engine.state !== 'ready') return false;
  if (state.role === 'root') return true;
  const root = state.root ? state.peers[state.root] : undefined;
  return state.role === 'worker' && root?.engine === 'ready' && (root.serving ?? []).includes(nodeBoot({ node: state.node, boot: state.boot }));
}

/**
 * The addresses this node's engine ports accept: only the nodes its engine works with. A root:
 * the workers its engine runs with. A worker: its root, and the other workers of that root
 * (dllama's workers connect to each other) — those the root serves with once it serves. An
 * undecided node: nobody. So a node that left, or an address a peer no longer has, drops out.
 */
export function firewallMembers(state: AgentState): string[] {
  let members: Announcement[] = [];
  if (state.role === 'root') members = state.workers;
  else if (state.role === 'worker' && state.root) {
    const root = state.peers[state.root];
    const serving = root?.engine === 'ready' ? new Set(root.serving ?? []) : undefined;
    const fellows = Object.values(state.peers).filter((p) => p.role === 'worker' && p.root === state.root && (!serving || serving.has(nodeBoot(p))));
    members = [...(root ? [root] : []), ...fellows];
  }
  return [...new Set(members.flatMap((p) => p.addresses))].sort();
}

/** Whether a settled node answers a peer's repeated announcement (the peer waits for word from it). */
export function shouldAnswer(state: AgentState, peer: Announcement): boolean {
  return peer.role === 'undecided' || (peer.role === 'root' && peer.engine !== 'ready') || (state.role === 'root' && peer.role === 'worker' && peer.root === state.node);
}

/** One pass of the controller: the next state and the actions that get the node there, in order. */
export function reconcile(state: AgentState): { state: AgentState; actions: Action[] } {
  const actions: Action[] = [];
  let next: AgentState = state;

  const term = currentTerm(view(next));
  const decided = decideRole(view(next));
  if (decided.role !== 'undecided' && (decided.role !== next.role || decided.root !== next.root || term !== next.term)) {
    actions.push({ do: 'log', line: decided.role === 'root' ? 'this node is the root' : `this node is a worker of ${decided.root}` });
    if (next.role === 'root' && decided.role !== 'root') {
      actions.push({ do: 'stop-serving' });
      next = { ...next, apiFront: false };
    }
    if (next.role !== 'undecided' && next.role !== decided.role) {
      actions.push({ do: 'stop-engine' });
      next = { ...next, engine: { state: 'stopped', generation: next.engine.generation + 1 }, workers: [] };
    }
    next = { ...next, role: decided.role, root: decided.root, term };
    actions.push({ do: 'persist-role', role: decided.role, root: decided.root ?? next.node, term });
  }

  // A worker whose root is not here waits a grace period (a reboot is not a failure), then
  // gives it up; a worker whose root is here holds a link to it, which drops if it dies.
  const rootPeer = next.role === 'worker' && next.root ? next.peers[next.root] : undefined;
  const awaited = next.role === 'worker' && next.root && !rootPeer ? next.root : undefined;
  if (awaited !== next.grace) {
    actions.push({ do: 'grace', ...(awaited ? { root: awaited } : {}) });
    next = { ...next, grace: awaited };
  }
  const link = rootPeer?.addresses[0] ? { node: rootPeer.node, address: rootPeer.addresses[0] } : undefined;
  const linkKey = link && `${link.node}@${link.address}`;
  if (linkKey !== next.link) {
    actions.push({ do: 'link', ...(link ? { to: link } : {}) });
    next = { ...next, link: linkKey };
  }

  // Before an engine starts: a failed start skips the rest of the pass.
  const members = firewallMembers(next);
  if (next.firewall === undefined || members.join(',') !== next.firewall.join(',')) {
    actions.push({ do: 'firewall', members });
    next = { ...next, firewall: members };
  }

  // A worker's engine serves one root, listening on the address facing it (the agent picks the
  // own address on the root's subnet), and is not started before that root is heard. Started
  // again when the root, its address or its machine's boot changes (a single-client RPC server
  // may still hang on to a dead root's connection), not when the root is merely missing for a
  // while or its agent restarts (that must not cut the engine's connections).
  // An update switching the runtime holds the engine stopped; the new runtime's version is in
  // the engine keys below, so the engine starts again on it once the hold ends.
  if (next.held && next.engine.state !== 'stopped') {
    actions.push({ do: 'stop-engine' });
    next = { ...next, engine: { state: 'stopped', generation: next.engine.generation + 1, detail: next.held } };
  }
  if (!next.held && next.role === 'worker' && rootPeer?.addresses[0]) {
    const workerKey = `worker@${rootPeer.addresses[0]}/${rootPeer.node}/${rootPeer.machineBoot ?? ''}#${next.runtime}`;
    if (next.engine.state === 'stopped' || next.engine.state === 'failed' || next.engine.key !== workerKey) {
      const generation = next.engine.generation + 1;
      actions.push({ do: 'start-worker', generation, adopt: next.engine.generation === 0 });
      next = { ...next, engine: { state: 'starting', key: workerKey, generation } };
    }
  }

  if (next.role === 'root') {
    if (!next.apiFront) {
      actions.push({ do: 'serve-api' });
      next = { ...next, apiFront: true };
    }
    actions.push({ do: 'publish-name', toward: next.workers[0]?.addresses[0] ?? Object.values(next.peers)[0]?.addresses[0] });
    const workers = engineWorkers(view(next), next.workers, ENGINES[next.engineName].usableNodes);
    if (!next.canHoldModel) {
      next = { ...next, engine: { ...next.engine, detail: next.modelProblem } };
    } else if (!workers) {
      next = { ...next, engine: { ...next.engine, detail: `waiting for ${next.size - 1} workers` } };
    } else if (!next.held) {
      const key = `${workerSetKey(workers)}#${next.runtime}`;
      if (key !== next.engine.key || next.engine.state === 'failed') {
        // Admitted before the start: a worker brought onto this root's versions first fetches the bundle from here.
        const admitted = firewallMembers({ ...next, workers });
        if (admitted.join(',') !== (next.firewall ?? []).join(',')) {
          actions.push({ do: 'firewall', members: admitted });
          next = { ...next, firewall: admitted };
        }
        const generation = next.engine.generation + 1;
        actions.push({ do: 'start-root', generation, workers, adopt: next.engine.generation === 0 });
        next = { ...next, engine: { state: 'starting', key, generation }, workers };
      } else if (workers.map(nodeBoot).join(',') !== next.workers.map(nodeBoot).join(',')) {
        // The same engine servers under a worker's new agent: named anew in `serving`, not restarted.
        next = { ...next, workers };
      }
    }
  }

  actions.push({ do: 'eager', on: !settled(next) });
  const announcement = JSON.stringify(ownAnnouncement(next));
  if (announcement !== next.announced) {
    actions.push({ do: 'announce' });
    next = { ...next, announced: announcement };
  }
  return { state: next, actions };
}
