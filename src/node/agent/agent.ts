import { spawn } from 'node:child_process';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer as createSocketServer } from 'node:net';
import { availableParallelism, hostname } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import type { EngineAdapter } from '../../shared/engines/adapter.js';
import { ENGINES } from '../../shared/engines/index.js';
import { activeLevers } from '../../shared/tuning/levers.js';
import { createApiFront } from '../api/api-front.js';
import type { Announcement, EngineState } from '../../shared/discovery-protocol.js';
import { Discovery, type OwnState } from '../cluster/discovery.js';
import { memberSetCommands, renderFirewall } from '../cluster/firewall.js';
import { decideRole, engineWorkers, nodeBoot, workerSetKey, type Role } from '../cluster/membership.js';
import { httpOk, isListening, startEngineUnit, stopEngineUnit, waitEngineReady } from '../engine-control.js';
import { writeFileAtomic } from '../../shared/atomic-write.js';
import { lanAddresses, nodeId, sameSubnet } from '../identity.js';
import { readText } from '../sys.js';
import { loadTuningState } from '../settings.js';
import { API_TOKEN, CLUSTER_SECRET, CLUSTER_STATE_PATH, ENGINE_BIN_DIR, NODE_ID_PATH, RUN_DIR, SECRETS_DIR, STATE_DIR, STATUS_SOCKET } from '../../shared/node-paths.js';
import type { NodeSettings } from '../../shared/node-settings.js';
import { ENGINE_PRIVATE_PORT } from '../../shared/ports.js';
import { publishClusterName } from './mdns.js';

/** What the agent keeps across reboots: the role it took and the root it follows or is. */
interface PersistedState {
  role: 'root' | 'worker';
  root: string;
}

export interface AgentStatus {
  node: string;
  hostname: string;
  cluster: string;
  size: number;
  configured: NodeSettings['role'];
  role: Role;
  root?: string;
  addresses: string[];
  engine: { name: string; state: EngineState; command?: string; workers?: string[]; detail?: string };
  model: string | null;
  api?: { port: number; url: string };
  peers: { node: string; hostname: string; boot: string; role: Role; root?: string; engine: EngineState; addresses: string[] }[];
  rejected: { badTag: number; replayed: number; malformed: number; otherCluster: number };
}



async function engineThreads(): Promise<number> {
  try {
    const state = await loadTuningState();
    for (const lever of activeLevers(state.levers)) {
      const n = Number(lever.apply.engine?.Environment?.PI_IMAGE_ENGINE_THREADS);
      if (Number.isInteger(n) && n > 0) return n;
    }
  } catch {
    // no tuning profile: all but one core
  }
  return Math.max(1, availableParallelism() - 1);
}

async function readSecret(name: string): Promise<Buffer | undefined> {
  const data = await readFile(join(SECRETS_DIR, name)).catch(() => undefined);
  return data && data.toString('utf8').trim() ? Buffer.from(data.toString('utf8').trim()) : undefined;
}

/**
 * The long-running node agent: discovery, role, engine supervision, firewall, API front.
 * Everything happens in answer to an event (a datagram, an engine that became ready, a
 * request); nothing runs on a timer once the cluster serves.
 */
export class Agent {
  private peers = new Map<string, Announcement>();
  private role: Role = 'undecided';
  private root?: string;
  private engineState: EngineState = 'stopped';
  private engineCommand?: string;
  private engineDetail?: string;
  private engineKey?: string;
  private engineGeneration = 0;
  private workers: Announcement[] = [];
  private api?: Server;
  private discovery!: Discovery;
  private members = '';
  private published?: string;
  private mdns?: { close(): void };
  private reconciling = false;
  private dirty = false;
  private id = '';
  private canHoldModel = false;
  private threads = 1;
  private readonly adapter: EngineAdapter;

  constructor(
    private readonly settings: NodeSettings,
    private readonly log: (line: string) => void,
  ) {
    this.adapter = ENGINES[settings.engine.name];
  }

  async start(): Promise<void> {
    const secret = await readSecret(CLUSTER_SECRET);
    if (!secret) throw new Error(`no cluster secret in ${join(SECRETS_DIR, CLUSTER_SECRET)}: put one on the boot partition as pi-image/${CLUSTER_SECRET} (same for every node) and reboot`);
    await mkdir(RUN_DIR, { recursive: true, mode: 0o755 });
    await mkdir(STATE_DIR, { recursive: true });
    this.id = (await readText(NODE_ID_PATH)) ?? (await nodeId()).id;
    this.threads = await engineThreads();
    const model = this.settings.model;
    this.canHoldModel = model !== null && (await stat(model.path).then((s) => s.isFile(), () => false));
    const persisted = await readFile(CLUSTER_STATE_PATH, 'utf8').then((t) => JSON.parse(t) as PersistedState, () => undefined);
    if (persisted) {
      this.role = persisted.role;
      this.root = persisted.root;
    }
    await this.applyFirewall(true);
    await waitForAddress(this.log);
    this.discovery = new Discovery({
      secret,
      cluster: this.settings.cluster.name,
      port: this.settings.cluster.discoveryPort,
      state: () => this.ownState(),
      onPeer: (peer) => {
        this.peers.set(peer.node, peer);
        this.schedule();
      },
      shouldAnswer: (peer) =>
        peer.role === 'undecided' || (peer.role === 'root' && peer.engine !== 'ready') || (this.role === 'root' && peer.role === 'worker' && peer.root === this.id),
      log: this.log,
    });
    await this.discovery.start();
    await this.serveStatus();
    this.log(`node ${this.id} (${hostname()}), cluster ${this.settings.cluster.name} of ${this.settings.cluster.size}, built as ${this.settings.role}${persisted ? `, ${persisted.role} before this boot` : ''}`);
    this.schedule();
  }

  private ownState(): OwnState {
    return {
      cluster: this.settings.cluster.name,
      node: this.id,
      hostname: hostname(),
      configured: this.settings.role,
      role: this.role,
      root: this.root,
      canHoldModel: this.canHoldModel,
      engine: this.engineState,
      ...(this.role === 'root' ? { serving: this.workers.map(nodeBoot) } : {}),
    };
  }

  /**
   * Whether this node can stop repeating itself: a root once its engine serves; a worker once
   * its engine is ready and its root's engine runs with this very boot of it (so a worker whose
   * first words were lost, e.g. before it had an address, keeps speaking until it is heard).
   */
  private settled(): boolean {
    if (this.engineState !== 'ready') return false;
    if (this.role === 'root') return true;
    const root = this.root ? this.peers.get(this.root) : undefined;
    return this.role === 'worker' && root?.engine === 'ready' && (root.serving ?? []).includes(nodeBoot({ node: this.id, boot: this.discovery.bootId }));
  }

  private view() {
    return { self: { v: 2 as const, ...this.ownState(), boot: this.discovery.bootId, seq: 0, addresses: lanAddresses().map((a) => a.address) }, peers: [...this.peers.values()], size: this.settings.cluster.size };
  }

  /** Runs reconcile once for any number of events that arrived meanwhile. */
  private schedule(): void {
    this.dirty = true;
    if (this.reconciling) return;
    this.reconciling = true;
    void (async () => {
      while (this.dirty) {
        this.dirty = false;
        try {
          await this.reconcile();
        } catch (e) {
          this.log(`error: ${(e as Error).message}`);
        }
      }
      this.reconciling = false;
    })();
  }

  private async reconcile(): Promise<void> {
    const before = JSON.stringify(this.ownState());
    const decided = decideRole(this.view());
    if (decided.role !== 'undecided' && (decided.role !== this.role || decided.root !== this.root)) {
      this.log(decided.role === 'root' ? 'this node is the root' : `this node is a worker of ${decided.root}`);
      if (this.role === 'root' && decided.role !== 'root') await this.stopServing();
      if (this.role !== 'undecided' && this.role !== decided.role) await this.stopEngine();
      this.role = decided.role;
      this.root = decided.root;
      const persist: PersistedState = { role: decided.role, root: decided.root ?? this.id };
      await writeFileAtomic(CLUSTER_STATE_PATH, `${JSON.stringify(persist)}\n`);
    }
    await this.applyFirewall(false);
    if (this.role === 'worker') await this.runWorker();
    if (this.role === 'root') await this.runRoot();
    this.discovery.setEager(!this.settled());
    if (JSON.stringify(this.ownState()) !== before) this.discovery.announce();
  }

  private async runWorker(): Promise<void> {
    if (this.engineState !== 'stopped' && this.engineState !== 'failed') return;
    const line = this.adapter.worker({ bindAddress: '0.0.0.0', port: this.adapter.workerPort, threads: this.threads });
    await this.launch(line, 'worker', () => isListening(this.adapter.workerPort), 120_000);
  }

  private async runRoot(): Promise<void> {
    if (!this.api) await this.startApiFront();
    await this.publishName();
    const model = this.settings.model;
    if (!model || !this.canHoldModel) {
      this.engineDetail = model ? `the model ${model.path} is missing on this node` : 'this image has no model (build with --model)';
      return;
    }
    const workers = engineWorkers(this.view());
    if (!workers) {
      this.engineDetail = `waiting for ${this.settings.cluster.size - 1} workers`;
      return;
    }
    const key = workerSetKey(workers);
    if (key === this.engineKey && this.engineState !== 'failed') return;
    this.engineKey = key;
    this.workers = workers;
    const line = this.adapter.root({
      model: model.path,
      tokenizer: model.tokenizer,
      apiPort: ENGINE_PRIVATE_PORT,
      threads: this.threads,
      contextLength: this.settings.engine.contextLength,
      workers: workers.map((w) => ({ address: w.addresses[0] as string, port: this.adapter.workerPort })),
    });
    await this.launch(line, `root with ${workers.length} worker(s)`, () => httpOk(`http://127.0.0.1:${ENGINE_PRIVATE_PORT}${this.adapter.readinessPath}`), 30 * 60_000);
  }

  /** Starts the engine unit and waits for readiness in the background (the agent keeps answering meanwhile). */
  private async launch(line: ReturnType<EngineAdapter['worker']>, what: string, ready: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const generation = ++this.engineGeneration;
    this.engineState = 'starting';
    this.engineDetail = undefined;
    try {
      this.engineCommand = await startEngineUnit(line, [this.settings.engine.binDir || ENGINE_BIN_DIR]);
    } catch (e) {
      this.engineState = 'failed';
      this.engineDetail = (e as Error).message;
      this.log(`engine: ${this.engineDetail}`);
      return;
    }
    this.log(`engine starting as ${what}: ${this.engineCommand}`);
    void waitEngineReady(ready, { timeoutMs, cancelled: () => generation !== this.engineGeneration }).then((outcome) => {
      if (outcome === 'cancelled') return;
      this.engineState = outcome === 'ready' ? 'ready' : 'failed';
      if (outcome === 'failed') this.engineDetail = 'the engine did not become ready: journalctl -u pi-image-engine';
      this.log(`engine ${this.engineState} (${what})`);
      this.schedule();
    });
  }

  private async stopEngine(): Promise<void> {
    this.engineGeneration++;
    await stopEngineUnit();
    this.engineState = 'stopped';
    this.engineKey = undefined;
  }

  private async stopServing(): Promise<void> {
    await new Promise<void>((resolve) => (this.api ? this.api.close(() => resolve()) : resolve()));
    this.api = undefined;
    this.mdns?.close();
    this.mdns = undefined;
    this.published = undefined;
  }

  private async startApiFront(): Promise<void> {
    const token = await readSecret(API_TOKEN);
    const model = this.settings.model;
    this.api = createApiFront({
      engineUrl: `http://127.0.0.1:${ENGINE_PRIVATE_PORT}`,
      modelName: model?.name ?? 'none',
      bearerToken: token?.toString('utf8'),
      // Ready means the engine answers now, not only that it did when it started (a worker may have gone).
      health: async () => ({
        cluster: this.settings.cluster.name,
        role: this.role,
        engine: this.engineState,
        ready: this.engineState === 'ready' && (await httpOk(`http://127.0.0.1:${ENGINE_PRIVATE_PORT}${this.adapter.readinessPath}`)),
        workers: this.workers.map((w) => ({ node: w.node, hostname: w.hostname, address: w.addresses[0], boot: w.boot })),
        nodes: 1 + this.peers.size,
        size: this.settings.cluster.size,
        ...(this.engineDetail ? { detail: this.engineDetail } : {}),
      }),
    });
    const port = this.settings.cluster.apiPort;
    await new Promise<void>((resolve, reject) => {
      this.api?.once('error', reject);
      this.api?.listen(port, '0.0.0.0', () => resolve());
    });
    this.log(`API front on port ${port}${token ? ' (bearer token required)' : ''}`);
    await this.publishName();
  }

  /** `<cluster>.local` → this root's address on the LAN its workers are on (not, say, a second NIC elsewhere). */
  private async publishName(): Promise<void> {
    const peer = this.workers[0]?.addresses[0] ?? [...this.peers.values()][0]?.addresses[0];
    const own = lanAddresses();
    const facing = peer ? own.find((a) => sameSubnet(a.address, peer, a.netmask)) : undefined;
    const address = facing?.address ?? own[0]?.address;
    if (address && address !== this.published) {
      this.published = address;
      this.mdns?.close();
      this.mdns = publishClusterName(this.settings.cluster.name, address, this.log);
    }
  }

  /** Engine ports: current members only. The whole table at start, then only the member set. */
  private async applyFirewall(whole: boolean): Promise<void> {
    const members = [...new Set([...this.peers.values()].flatMap((p) => p.addresses))].sort();
    const key = members.join(',');
    if (!whole && key === this.members) return;
    const ports = [...new Set([this.adapter.workerPort, ENGINE_PRIVATE_PORT, ...(this.adapter.name === 'dllama' ? [9998] : [])])];
    const rules = whole ? renderFirewall({ enginePorts: ports, members }) : memberSetCommands(members);
    const r = await runWithInput('nft', ['-f', '-'], rules);
    if (r !== 0) throw new Error(`nft could not load the engine-port firewall (exit ${r}); the engine stays stopped`);
    this.members = key;
    if (!whole) this.log(`firewall: engine ports open to ${members.length ? members.join(', ') : 'no one'}`);
  }

  /** `pi-node status` asks over a unix socket: live counters, and no file written per event. */
  private async serveStatus(): Promise<void> {
    await rm(STATUS_SOCKET, { force: true });
    const server = createSocketServer((socket) => socket.end(`${JSON.stringify(this.status(), null, 2)}\n`));
    await new Promise<void>((resolve) => server.listen(STATUS_SOCKET, resolve));
  }

  status(): AgentStatus {
    return {
      node: this.id,
      hostname: hostname(),
      cluster: this.settings.cluster.name,
      size: this.settings.cluster.size,
      configured: this.settings.role,
      role: this.role,
      root: this.root,
      addresses: lanAddresses().map((a) => a.address),
      engine: {
        name: this.adapter.name,
        state: this.engineState,
        command: this.engineCommand,
        ...(this.role === 'root' ? { workers: this.workers.map((w) => `${w.hostname} ${w.addresses[0]}`) } : {}),
        detail: this.engineDetail,
      },
      model: this.settings.model?.path ?? null,
      ...(this.api ? { api: { port: this.settings.cluster.apiPort, url: `http://${this.settings.cluster.name}.local:${this.settings.cluster.apiPort}/v1` } } : {}),
      peers: [...this.peers.values()]
        .sort((a, b) => a.node.localeCompare(b.node))
        .map((p) => ({ node: p.node, hostname: p.hostname, boot: p.boot, role: p.role, root: p.root, engine: p.engine, addresses: p.addresses })),
      rejected: { badTag: this.discovery.counters.badTag, replayed: this.discovery.counters.replayed, malformed: this.discovery.counters.malformed, otherCluster: this.discovery.counters.otherCluster },
    };
  }
}

/** At boot the agent may start before the LAN has an address (link-local takes seconds): wait for one, a minute at most. */
async function waitForAddress(log: (line: string) => void): Promise<void> {
  for (let i = 0; i < 60 && lanAddresses().length === 0; i++) await new Promise((r) => setTimeout(r, 1000));
  if (lanAddresses().length === 0) log('no IPv4 address on any LAN interface yet; announcing once one appears');
}

function runWithInput(command: string, args: string[], input: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['pipe', 'inherit', 'inherit'] });
    child.on('error', () => resolve(127));
    child.on('close', (code) => resolve(code ?? 1));
    child.stdin.end(input);
  });
}
