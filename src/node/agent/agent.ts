import { createHash } from 'node:crypto';
import { watch } from 'node:fs';
import { readFile, mkdir, stat } from 'node:fs/promises';
import { availableParallelism, hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { Server } from 'node:http';
import type { EngineAdapter, LaunchLine } from '../../shared/engines/adapter.js';
import type { RuntimeInfo } from '../../shared/ota/version-info.js';
import { currentModel, currentRuntime } from '../runtime.js';
import { ENGINES } from '../../shared/engines/index.js';
import { API_TOKEN, CLUSTER_SECRET, ENGINE_EXIT_PATH, NODE_ID_PATH, RUN_DIR, SECRETS_DIR, STATE_DIR } from '../../shared/node-paths.js';
import type { NodeSettings } from '../../shared/node-settings.js';
import { ENGINE_PRIVATE_PORT, OTA_PORT } from '../../shared/ports.js';
import type { Member } from '../ota/coordinator.js';
import { engineThreads } from '../../shared/tuning/engine-threads.js';
import { createApiFront } from '../api/api-front.js';
import { Discovery } from '../cluster/discovery.js';
import { workerSetKey } from '../cluster/membership.js';
import { httpOk, isListening } from '../engine-control.js';
import { lanAddresses, nodeId, sameSubnet } from '../identity.js';
import { loadTuningState } from '../settings.js';
import { readText } from '../sys.js';
import { ClusterName } from './cluster-name.js';
import { applyEvent, engineServes, initialState, ownAnnouncement, reconcile, shouldAnswer, type Action, type AgentEvent, type AgentState } from './controller.js';
import { EngineRunner, parseEngineExit } from './engine-runner.js';
import { FirewallSet } from './firewall-set.js';
import { RootLink } from './root-link.js';
import { readPersistedRole, writePersistedRole } from './persisted-role.js';
import { NodeOta } from './node-ota.js';
import { readNodeSecret } from '../secret-file.js';
import { agentStatus, serveStatus } from './status.js';


/**
 * The long-running node agent: feeds every event (a datagram, an engine that became ready) to
 * the controller and carries out the actions it returns, one pass at a time. Nothing runs on
 * a timer once the cluster serves.
 */
export class Agent {
  private state!: AgentState;
  private discovery!: Discovery;
  private api?: Server;
  private running = false;
  private pending: AgentEvent[] = [];
  private threads = 1;
  private readonly adapter: EngineAdapter;
  private readonly engine: EngineRunner;
  private readonly firewall: FirewallSet;
  private readonly name: ClusterName;
  private readonly rootLink: RootLink;
  private grace?: NodeJS.Timeout;
  private stopping = false;
  private ota!: NodeOta;
  /** The runtime `current` names (its version picks the launch line's flags), if the image has one. */
  private runtime?: RuntimeInfo;
  /** The model `current` names, if the image keeps its model in the versioned layout. */
  private model?: Awaited<ReturnType<typeof currentModel>>;

  constructor(
    private readonly settings: NodeSettings,
    private readonly log: (line: string) => void,
  ) {
    this.adapter = ENGINES[settings.engine.name];
    this.engine = new EngineRunner([settings.engine.binDir], (o) => this.dispatch({ on: 'engine', ...o }), log);
    this.firewall = new FirewallSet([...new Set([...this.adapter.firewallPorts, ENGINE_PRIVATE_PORT, OTA_PORT])], log);
    this.name = new ClusterName(settings.cluster.name, log);
    this.rootLink = new RootLink((node) => this.dispatch({ on: 'lost', node }), log);
  }

  async start(): Promise<void> {
    const secret = await readNodeSecret(CLUSTER_SECRET);
    if (!secret) throw new Error(`no cluster secret in ${join(SECRETS_DIR, CLUSTER_SECRET)}: put one on the boot partition as pi-image/${CLUSTER_SECRET} (same for every node) and reboot`);
    await mkdir(RUN_DIR, { recursive: true, mode: 0o755 });
    await mkdir(STATE_DIR, { recursive: true });
    const node = (await readText(NODE_ID_PATH)) ?? (await nodeId()).id;
    this.threads = engineThreads(await loadTuningState().then((s) => s.levers, () => []), availableParallelism());
    this.runtime = await currentRuntime();
    this.model = await currentModel();
    const modelPath = this.model?.path ?? this.settings.model?.path;
    const canHoldModel = this.settings.model !== null && modelPath !== undefined && (await stat(modelPath).then((s) => s.isFile(), () => false));
    const persisted = await readPersistedRole();
    // The table first, with no members: the engine ports are closed before anything else runs.
    await this.firewall.apply([]);
    await waitForAddress(this.log);
    this.discovery = new Discovery({
      secret,
      cluster: this.settings.cluster.name,
      port: this.settings.cluster.discoveryPort,
      state: () => ownAnnouncement(this.state),
      onPeer: (peer) => this.dispatch({ on: 'heard', peer }),
      onLeft: (node) => this.dispatch({ on: 'left', node }),
      shouldAnswer: (peer) => shouldAnswer(this.state, peer),
      log: this.log,
    });
    this.state = {
      ...initialState({ node, boot: this.discovery.bootId, machineBoot: await machineBoot(), hostname: hostname(), settings: this.settings, canHoldModel, persisted, addresses: lanAddresses().map((a) => a.address), runtime: this.installedKey() }),
      firewall: [],
    };
    // Before discovery: a peer heard at once may start the engine, and the root's start checks its workers' versions through this.
    this.ota = new NodeOta(this.settings, secret, node, {
      engine: { hold: (reason) => this.holdEngine(reason), release: () => this.releaseEngine() },
      isRoot: () => this.state.role === 'root',
      members: () => this.servingMembers(),
      self: () => ({ node: this.state.node, hostname: this.state.hostname, role: this.state.role, ...(this.state.root ? { root: this.state.root } : {}) }),
      workers: () => this.state.workers.map((w) => ({ node: w.node, hostname: w.hostname, address: w.addresses[0] as string })),
      addressFacing: (peer) => this.addressFacing(peer),
      waitServing: (members, timeoutMs) => this.waitServing(members, timeoutMs),
    }, this.log);
    await this.ota.start();
    await this.rootLink.listen();
    this.watchEngineExits();
    await this.discovery.start();
    await serveStatus(() => agentStatus(this.state, this.settings, { engineCommand: this.engine.command, counters: this.discovery.counters }));
    this.log(`node ${node} (${hostname()}), cluster ${this.settings.cluster.name} of ${this.settings.cluster.size}, built as ${this.settings.role}${persisted ? `, ${persisted.role} before this boot` : ''}`);
    this.dispatch({ on: 'addresses', addresses: this.state.addresses });
  }

  /** Says goodbye on the LAN; the engine unit is left to systemd (it stops with the agent only on shutdown). */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.grace);
    await this.discovery?.leave();
    this.rootLink.close();
  }

  /**
   * The engine unit writes how each run ended (its ExecStopPost); inotify wakes the agent, so a
   * crash is reported and the engine started again at once, and nothing polls meanwhile.
   */
  private watchEngineExits(): void {
    const name = basename(ENGINE_EXIT_PATH);
    watch(dirname(ENGINE_EXIT_PATH), (_event, file) => {
      if (file !== name || this.stopping) return;
      void readFile(ENGINE_EXIT_PATH, 'utf8').then((text) => {
        const exit = parseEngineExit(text);
        const crash = exit && this.engine.crashed(exit);
        if (!crash) return;
        this.log(`engine crashed: ${crash.what}; starting it again (journalctl -u pi-image-engine)`);
        this.dispatch({ on: 'engine-crashed', generation: crash.generation, what: crash.what, at: new Date().toISOString() });
      }, () => undefined);
    });
  }

  /** The cluster as it serves now, the root first: every node an update must reach; undefined unless this root serves with all of them. */
  private servingMembers(): Member[] | undefined {
    const s = this.state;
    if (!engineServes(s)) return undefined;
    return [{ node: s.node, address: s.addresses[0] ?? '127.0.0.1' }, ...s.workers.map((w) => ({ node: w.node, address: w.addresses[0] as string }))];
  }

  /** This node's address on the subnet of `peer` (a node may have several interfaces). */
  private addressFacing(peer: string): string {
    return lanAddresses().find((a) => sameSubnet(a.address, peer, a.netmask))?.address ?? this.state.addresses[0] ?? '127.0.0.1';
  }

  private async waitServing(members: Member[], timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const want = members.filter((m) => m.node !== this.state.node).map((m) => m.node).sort().join(',');
    // Only while an update checks its switch: nothing polls while the cluster serves.
    while (Date.now() < deadline) {
      if (engineServes(this.state) && this.state.workers.map((w) => w.node).sort().join(',') === want && (await this.engineAnswers())) return true;
      await new Promise((r) => setTimeout(r, 1000));
    }
    return false;
  }

  /** The runtime and model versions `current` names: the engine restarts when it changes. */
  private installedKey(): string {
    return `${this.runtime?.version ?? ''}${this.model ? `+model:${this.model.version}` : ''}`;
  }

  /** Holds the engine stopped for an update; resolves once it is. */
  private async holdEngine(reason: string): Promise<void> {
    this.dispatch({ on: 'runtime', version: this.state.runtime, held: reason });
    for (let i = 0; i < 600 && (this.running || this.state.engine.state !== 'stopped'); i++) await new Promise((r) => setTimeout(r, 100));
    if (this.state.engine.state !== 'stopped') throw new Error('the engine did not stop within a minute');
  }

  /** Lets the engine run again, on whatever `current` names now. */
  private async releaseEngine(): Promise<void> {
    this.runtime = await currentRuntime();
    this.model = await currentModel();
    this.dispatch({ on: 'runtime', version: this.installedKey() });
  }

  /** Runs only while a worker's root is missing; never while the cluster serves. */
  private graceTimer(root?: string): void {
    clearTimeout(this.grace);
    this.grace = undefined;
    if (!root) return;
    const seconds = this.settings.cluster.failoverGraceSeconds;
    this.log(`the root ${root} is missing: waiting ${seconds} s for it before electing another`);
    this.grace = setTimeout(() => this.dispatch({ on: 'grace-over', root }), seconds * 1000);
  }

  /** Queues an event; one pass of the controller runs for any number of events that arrived meanwhile. */
  private dispatch(event: AgentEvent): void {
    this.pending.push(event);
    if (this.running) return;
    this.running = true;
    void (async () => {
      while (this.pending.length) {
        for (const e of this.pending.splice(0)) this.state = applyEvent(this.state, e);
        this.state = applyEvent(this.state, { on: 'addresses', addresses: lanAddresses().map((a) => a.address) });
        const { state, actions } = reconcile(this.state);
        this.state = state;
        await this.carryOut(actions);
      }
      this.running = false;
    })();
  }

  private async carryOut(actions: Action[]): Promise<void> {
    for (const [i, action] of actions.entries()) {
      try {
        await this.perform(action);
      } catch (e) {
        this.log(`error: ${(e as Error).message}`);
        // What this pass did not do is tried again on the next event.
        if (action.do === 'firewall') this.state = { ...this.state, firewall: undefined };
        const skippedStart = actions.slice(i).find((a) => a.do === 'start-worker' || a.do === 'start-root');
        if (skippedStart && 'generation' in skippedStart) this.state = applyEvent(this.state, { on: 'engine', generation: skippedStart.generation, state: 'failed', detail: (e as Error).message });
        return;
      }
    }
  }

  private async perform(action: Action): Promise<void> {
    switch (action.do) {
      case 'log':
        return this.log(action.line);
      case 'persist-role':
        return writePersistedRole({ role: action.role, root: action.root, ...(action.term ? { term: action.term } : {}) });
      case 'grace':
        return this.graceTimer(action.root);
      case 'link':
        return this.rootLink.hold(action.to);
      case 'stop-serving':
        // A running stream would hold close() up to the generation bound: cut the connections.
        this.api?.closeAllConnections();
        await new Promise<void>((resolve) => (this.api ? this.api.close(() => resolve()) : resolve()));
        this.api = undefined;
        return this.name.close();
      case 'stop-engine':
        return this.engine.stop();
      case 'firewall':
        return this.firewall.apply(action.members);
      case 'start-worker': {
        // The RPC server has no authentication: it listens only on this node's address on its
        // root's subnet (a node may have other interfaces), else on the address it announces first.
        const rootAddress = this.state.root ? this.state.peers[this.state.root]?.addresses[0] : undefined;
        const lan = lanAddresses();
        const bindAddress = (rootAddress && lan.find((a) => sameSubnet(a.address, rootAddress, a.netmask))?.address) ?? this.state.addresses[0];
        if (!bindAddress) throw new Error('no LAN address yet to bind the engine worker to');
        const line = this.withEntry(this.adapter.worker({ bindAddress, port: this.adapter.workerPort, threads: this.threads, version: this.runtime?.version ?? this.settings.engine.version }), 'worker');
        return this.engine.start(action.generation, line, 'worker', () => isListening(this.adapter.workerPort), 120_000, action.adopt);
      }
      case 'start-root': {
        const model = this.settings.model;
        if (!model) throw new Error('this image has no model');
        const line = this.withEntry(this.adapter.root({
          model: this.model?.path ?? model.path,
          tokenizer: this.model ? this.model.tokenizerPath : model.tokenizer,
          apiPort: ENGINE_PRIVATE_PORT,
          threads: this.threads,
          contextLength: this.settings.engine.contextLength,
          version: this.runtime?.version ?? this.settings.engine.version,
          temperature: this.settings.engine.temperature,
          workers: action.workers.map((w) => ({ address: w.addresses[0] as string, port: this.adapter.workerPort })),
        }), 'root');
        if ((this.runtime || this.model) && action.workers.length) {
          // Every node on the root's runtime and model before the engine starts: never a mix of versions.
          const { changed, problems } = await this.ota.coordinator.align(action.workers.map((w) => ({ node: w.node, address: w.addresses[0] as string })));
          if (problems.length) throw new Error(`cannot check or bring every worker onto this root's runtime and model (${problems.join('; ')}); the engine starts once it can`);
          if (changed.length) throw new Error(`brought ${changed.join(', ')} onto this root's runtime and model first; the engine starts once they are ready again`);
        }
        return this.engine.start(action.generation, line, `root with ${action.workers.length} worker(s)`, () => this.engineAnswers(), 30 * 60_000, action.adopt, workerSetKey(action.workers));
      }
      case 'serve-api':
        return this.serveApi();
      case 'publish-name':
        return this.name.publish(action.toward);
      case 'eager':
        return this.discovery.setEager(action.on);
      case 'announce':
        return this.discovery.announce();
    }
  }

  /** The role's program as the current runtime names it (an update may bring its own entry points). */
  private withEntry(line: LaunchLine, role: 'root' | 'worker'): LaunchLine {
    if (!this.runtime) return line;
    const { entry, libraryPath } = this.runtime;
    return { ...line, command: join(this.settings.engine.binDir, entry[role]), ...(libraryPath !== undefined ? { libraryDir: join(this.settings.engine.binDir, libraryPath) } : {}) };
  }

  private engineAnswers(): Promise<boolean> {
    return httpOk(`http://127.0.0.1:${ENGINE_PRIVATE_PORT}${this.adapter.readinessPath}`);
  }

  private async serveApi(): Promise<void> {
    const token = await readNodeSecret(API_TOKEN);
    this.api = createApiFront({
      engineUrl: `http://127.0.0.1:${ENGINE_PRIVATE_PORT}`,
      modelName: this.settings.model?.name ?? 'none',
      modelAliases: this.settings.model?.aliases,
      bearerToken: token?.toString('utf8'),
      contextLength: this.settings.engine.contextLength,
      engine: this.settings.engine.name,
      corsOrigins: this.settings.cluster.corsOrigins ?? [],
      // llama-server counts a prompt's tokens itself (/tokenize); dllama-api cannot: a bytes bound.
      promptCount: this.settings.engine.name === 'dllama' ? 'bytes' : 'engine',
      // Ready means the engine answers now, not only that it did when it started (a worker may have gone).
      health: async () => ({
        cluster: this.settings.cluster.name,
        role: this.state.role,
        engine: this.state.engine.state,
        ready: engineServes(this.state) && (await this.engineAnswers()),
        workers: this.state.workers.map((w) => ({ node: w.node, hostname: w.hostname, address: w.addresses[0], boot: w.boot })),
        nodes: 1 + Object.keys(this.state.peers).length,
        size: this.settings.cluster.size,
        ...(this.state.engine.detail ? { detail: this.state.engine.detail } : {}),
      }),
    });
    const port = this.settings.cluster.apiPort;
    await new Promise<void>((resolve, reject) => {
      this.api?.once('error', reject);
      this.api?.listen(port, '0.0.0.0', () => resolve());
    });
    this.log(`API front on port ${port}${token ? ' (bearer token required)' : ''}`);
  }
}

/** The kernel's id of this boot of the machine, shortened (peers only compare it). */
async function machineBoot(): Promise<string | undefined> {
  const id = await readText('/proc/sys/kernel/random/boot_id');
  return id ? createHash('sha256').update(id).digest('hex').slice(0, 16) : undefined;
}

/** At boot the agent may start before the LAN has an address (link-local takes seconds): wait for one, a minute at most. */
async function waitForAddress(log: (line: string) => void): Promise<void> {
  for (let i = 0; i < 60 && lanAddresses().length === 0; i++) await new Promise((r) => setTimeout(r, 1000));
  if (lanAddresses().length === 0) log('no IPv4 address on any LAN interface yet; announcing once one appears');
}
