import type { Announcement, Counters } from '../../../../src/shared/discovery-protocol.js';
import { Discovery } from '../../../../src/node/cluster/discovery.js';
import type { NodeSettings } from '../../../../src/shared/node-settings.js';
import { applyEvent, initialState, ownAnnouncement, reconcile, shouldAnswer, type AgentEvent, type AgentState } from '../../../../src/node/agent/controller.js';
import type { PersistedRole } from '../../../../src/node/agent/persisted-role.js';
import { workerSetKey } from '../../../../src/node/cluster/membership.js';

/**
 * Nodes running the real controller and the real discovery on a simulated LAN: announcements
 * are really signed, verified and proven fresh (so a wrong secret or a replay is really
 * refused), engines become ready (or fail) as told, the persisted role lives on a simulated
 * card. Delivery is in order; `repeat()` stands for the back-off timer of nodes that are still
 * assembling, and moves the clock on by a second.
 */
export interface SimNodeOptions {
  configured?: NodeSettings['role'];
  canHoldModel?: boolean;
  secret?: string;
  /** The engine never becomes ready. */
  engineFails?: boolean;
}

export class SimNode {
  state!: AgentState;
  on = false;
  eager = true;
  firewall?: string[];
  /** The root this node's grace timer waits for, if one runs. */
  grace?: string;
  /** The node this node holds a root link to. */
  link?: string;
  /** The card: what survives a reboot (a re-flash wipes it). */
  card: { persisted?: PersistedRole } = {};
  boots = 0;
  /** Agent starts within the current machine boot. */
  agentStarts = 0;
  engineStarts = 0;
  /** Every engine start, and whether it could keep an engine already running. */
  starts: { as: 'worker' | 'root'; adopt: boolean }[] = [];
  /** The engine process on the machine (it outlives an agent restart): its run, and what a root's runs with. */
  engine?: { run: string; with: string };
  runs = 0;
  discovery!: Discovery;
  /** Every datagram this node sent, for replaying them later. */
  sent: Buffer[] = [];

  constructor(
    readonly id: string,
    readonly address: string,
    readonly opts: SimNodeOptions,
  ) {}

  get secret(): Buffer {
    return Buffer.from(this.opts.secret ?? 'the-cluster-secret-0123456789');
  }

  get counters(): Counters {
    return this.discovery.counters;
  }
}

export class ClusterSim {
  readonly nodes = new Map<string, SimNode>();
  /** Engines that fail do so after the agent's readiness timeout: delivered by `repeat()`. */
  private failing: { to: SimNode; event: AgentEvent }[] = [];
  private queue: { to: SimNode; event: AgentEvent | { on: 'datagram'; data: Buffer; from: string } }[] = [];
  readonly log: string[] = [];
  /** Milliseconds: a delivery takes 10, a repeat() a second. */
  clock = 0;

  constructor(
    readonly size: number,
    readonly engine: NodeSettings['engine']['name'] = 'llama.cpp',
  ) {}

  add(id: string, opts: SimNodeOptions = {}): SimNode {
    const node = new SimNode(id, `10.9.0.${this.nodes.size + 2}`, opts);
    this.nodes.set(id, node);
    return node;
  }

  node(id: string): SimNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  settings(node: SimNode): NodeSettings {
    return {
      cluster: { name: 'sim', size: this.size, apiPort: 8080, discoveryPort: 47474, failoverGraceSeconds: 120, corsOrigins: [] },
      role: node.opts.configured ?? 'auto',
      engine: { name: this.engine, binDir: '/opt/pi-image/runtime/current', contextLength: 4096 },
      model: { path: '/var/lib/pi-image/model/m.gguf', name: 'm' },
      user: { name: 'pi' },
    };
  }

  /** Powers a node on (again): a new machine and agent boot, memory empty, the card as it was. */
  boot(id: string): void {
    const node = this.node(id);
    node.boots++;
    node.agentStarts = 0;
    this.startAgent(node);
  }

  /** Only the agent restarts (the machine and its engine keep running): a new agent boot id, the same machine boot. */
  restartAgent(id: string, meanwhile?: () => void): void {
    const node = this.node(id);
    void node.discovery.leave();
    this.run();
    node.on = false;
    meanwhile?.();
    this.startAgent(node);
  }

  private startAgent(node: SimNode): void {
    const id = node.id;
    node.agentStarts++;
    node.on = true;
    node.eager = true;
    node.firewall = undefined;
    node.grace = undefined;
    node.link = undefined;
    const boot = node.agentStarts === 1 ? `${id}.${node.boots}` : `${id}.${node.boots}.${node.agentStarts}`;
    node.discovery = new Discovery({
      secret: node.secret,
      cluster: 'sim',
      port: 47474,
      bootId: boot,
      state: () => ownAnnouncement(node.state),
      onPeer: (peer) => this.pass(node, { on: 'heard', peer }),
      onLeft: (left) => this.pass(node, { on: 'left', node: left }),
      shouldAnswer: (peer) => shouldAnswer(node.state, peer),
      log: (line) => this.log.push(`${id}: ${line}`),
      lanAddresses: () => [{ address: node.address, netmask: '255.255.255.0', broadcast: '10.9.0.255' }],
      now: () => this.clock,
      transmit: (data) => this.transmit(node, data),
    });
    node.state = initialState({
      node: id,
      boot,
      machineBoot: `${id}-machine-${node.boots}`,
      hostname: `sim-${id}`,
      settings: this.settings(node),
      canHoldModel: node.opts.canHoldModel ?? true,
      persisted: node.card.persisted,
      addresses: [node.address],
    });
    this.queue.push({ to: node, event: { on: 'addresses', addresses: [node.address] } });
    this.broadcast(node);
  }

  powerOff(id: string): void {
    this.node(id).on = false;
    this.node(id).engine = undefined;
  }

  /** An event from the node's own effectors (an update's hold or release, a crash), and what it causes. */
  tell(id: string, event: AgentEvent): void {
    this.queue.push({ to: this.node(id), event });
    this.run();
  }

  /** The kernel's keepalive probes go unanswered: links to nodes that are off drop. */
  keepaliveExpires(): void {
    for (const n of this.live()) if (n.link && !this.node(n.link).on) this.queue.push({ to: n, event: { on: 'lost', node: n.link } });
    this.run();
  }

  /** The grace period ends for one node only (timers end at different times). */
  expireGraceOf(id: string): void {
    const n = this.node(id);
    if (n.grace) this.queue.push({ to: n, event: { on: 'grace-over', root: n.grace } });
    this.run();
  }

  /** The grace period ends for every node whose timer runs. */
  graceExpires(): void {
    for (const n of this.live()) if (n.grace) this.queue.push({ to: n, event: { on: 'grace-over', root: n.grace } });
    this.run();
  }

  /** A clean stop: the agent says it leaves, then the node is off. */
  shutDown(id: string): void {
    const node = this.node(id);
    void node.discovery.leave();
    this.run();
    node.on = false;
    // Its agent closed the links its workers held to it.
    for (const n of this.live()) if (n.link === id) this.queue.push({ to: n, event: { on: 'lost', node: id } });
    this.run();
  }

  /** Someone on the LAN sends these bytes from this address to every node. */
  inject(data: Buffer, from: string): void {
    for (const to of this.nodes.values()) if (to.on && to.address !== from) this.queue.push({ to, event: { on: 'datagram', data, from } });
  }

  /** A fresh copy of the image in the same board: same node id, nothing persisted. */
  reflash(id: string): void {
    this.node(id).card = {};
  }

  private broadcast(from: SimNode): void {
    from.discovery.announce();
  }

  private transmit(from: SimNode, data: Buffer): void {
    from.sent.push(data);
    this.inject(data, from.address);
  }

  /** Delivers everything queued, and what that causes, until the LAN is quiet. */
  run(maxSteps = 10_000): void {
    for (let step = 0; this.queue.length; step++) {
      if (step > maxSteps) throw new Error('the simulated cluster never went quiet');
      const { to, event } = this.queue.shift() as (typeof this.queue)[number];
      if (!to.on) continue;
      this.clock += 10;
      if (event.on === 'datagram') to.discovery.receive(event.data, event.from);
      else this.pass(to, event);
    }
  }

  /** The back-off timer: every node still assembling repeats itself, then the LAN settles. */
  repeat(times = 1): void {
    for (let i = 0; i < times; i++) {
      this.clock += 1000;
      this.queue.push(...this.failing.splice(0));
      for (const n of this.nodes.values()) if (n.on && n.eager) this.broadcast(n);
      this.run();
    }
  }

  private pass(node: SimNode, event: AgentEvent): void {
    node.state = applyEvent(node.state, event);
    const { state, actions } = reconcile(node.state);
    node.state = state;
    for (const a of actions) {
      switch (a.do) {
        case 'log':
          this.log.push(`${node.id}: ${a.line}`);
          break;
        case 'persist-role':
          node.card.persisted = { role: a.role, root: a.root, term: a.term };
          break;
        case 'grace':
          node.grace = a.root;
          break;
        case 'link':
          node.link = a.to?.node;
          // Linking to a node that is off fails at once (connection refused or unreachable).
          if (a.to && !this.node(a.to.node).on) this.queue.push({ to: node, event: { on: 'lost', node: a.to.node } });
          break;
        case 'firewall':
          node.firewall = a.members;
          break;
        case 'stop-engine':
          node.engine = undefined;
          break;
        case 'start-worker':
        case 'start-root': {
          // The root's firewall admits the workers before its engine starts with them (they may fetch an update's bundle from it first).
          if (a.do === 'start-root') {
            const shut = a.workers.flatMap((w) => w.addresses).filter((address) => !node.firewall?.includes(address));
            if (shut.length) throw new Error(`${node.id} starts its engine with workers its firewall does not admit: ${shut.join(', ')}`);
          }
          node.engineStarts++;
          node.starts.push({ as: a.do === 'start-root' ? 'root' : 'worker', adopt: a.adopt });
          // As engine-control.ts: a running engine is kept only when allowed and it runs with the same workers' runs.
          const runsWith = a.do === 'start-root' ? workerSetKey(a.workers) : '';
          if (!(a.adopt && node.engine?.with === runsWith)) node.engine = { run: `${node.id}-run${++node.runs}`, with: runsWith };
          if (node.opts.engineFails) this.failing.push({ to: node, event: { on: 'engine', generation: a.generation, state: 'failed' } });
          else this.queue.push({ to: node, event: { on: 'engine', generation: a.generation, state: 'ready', run: node.engine.run } });
          break;
        }
        case 'eager':
          node.eager = a.on;
          node.discovery.setEager(a.on);
          break;
        case 'announce':
          this.broadcast(node);
          break;
        default:
          break;
      }
    }
  }

  /** The nodes that are on. */
  live(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.on);
  }

  roots(): string[] {
    return this.live().filter((n) => n.state.role === 'root').map((n) => n.id);
  }

  /** The cluster serves: one root with a ready engine running with `workers` (default size - 1) ready workers that follow it. */
  serving(workers = this.size - 1): { root: string; workers: string[] } | undefined {
    const [root, ...others] = this.roots();
    if (!root || others.length) return undefined;
    const r = this.node(root).state;
    if (r.engine.state !== 'ready' || r.workers.length !== workers) return undefined;
    for (const w of r.workers) {
      const ws = this.node(w.node).state;
      if (!this.node(w.node).on || ws.role !== 'worker' || ws.root !== root || ws.engine.state !== 'ready' || ws.boot !== w.boot) return undefined;
    }
    return { root, workers: r.workers.map((w) => w.node) };
  }
}

export type { Announcement };
