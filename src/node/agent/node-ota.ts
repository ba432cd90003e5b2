import type { Server } from 'node:http';
import { join } from 'node:path';
import { API_TOKEN, MODEL_DIR, OTA_DIR, OTA_TRUSTED_KEYS_DIR, RUNTIME_DIR } from '../../shared/node-paths.js';
import type { NodeSettings } from '../../shared/node-settings.js';
import type { BundleManifest } from '../../shared/ota/manifest.js';
import { ENGINE_PRIVATE_PORT, OTA_PORT, OTA_PUSH_PORT } from '../../shared/ports.js';
import { readNodeSecret } from '../secret-file.js';
import { UpdateCoordinator, healthHash, type Member } from '../ota/coordinator.js';
import { NodeUpdater, type EngineHold, type UpdateKind } from '../ota/node-updater.js';
import { memberServer, ownerServer, sendCommand } from '../ota/ota-server.js';
import { debianArch, trustedKeys } from '../ota/trusted-keys.js';

/** What the OTA side needs of the agent: its engine, its view of the cluster. */
export interface OtaHost {
  engine: EngineHold;
  /** Whether this node is the root now (only a root coordinates and takes pushes). */
  isRoot: () => boolean;
  /** The cluster as it serves now, the root first; undefined unless this root serves with all of them. */
  members: () => Member[] | undefined;
  /** This node in `ota status`, and the workers it has. */
  self: () => { node: string; hostname: string; role: string; root?: string };
  workers: () => { node: string; hostname: string; address: string }[];
  /** This node's address on the subnet of a peer (where a worker fetches bundles from). */
  addressFacing: (peer: string) => string;
  waitServing: (members: Member[], timeoutMs: number) => Promise<boolean>;
}

/**
 * A node's part in OTA updates: its runtime and model updaters, the member port the root
 * commands them on, and on the root the coordinator and the owner's push port.
 */
export class NodeOta {
  readonly updaters: Record<UpdateKind, NodeUpdater>;
  readonly coordinator: UpdateCoordinator;

  constructor(
    private readonly settings: NodeSettings,
    private readonly secret: Buffer,
    node: string,
    private readonly host: OtaHost,
    private readonly log: (line: string) => void,
  ) {
    const trusted = () => trustedKeys(OTA_TRUSTED_KEYS_DIR, log);
    const expect = { engine: settings.engine.name, arch: debianArch() };
    const updater = (kind: UpdateKind, dir: string) => new NodeUpdater({ kind, dir, downloadDir: join(OTA_DIR, 'download'), trusted, expect, engine: host.engine, log });
    this.updaters = { runtime: updater('runtime', RUNTIME_DIR), model: updater('model', MODEL_DIR) };
    this.coordinator = new UpdateCoordinator({
      dir: OTA_DIR,
      self: node,
      local: this.updaters,
      trusted,
      expect,
      members: host.members,
      command: (m, command) => sendCommand(secret, m, OTA_PORT, command, command.op === 'state' ? 10_000 : undefined),
      bundleUrl: (m, sha256) => `http://${host.addressFacing(m.address)}:${OTA_PORT}/ota/bundle/${sha256}`,
      waitServing: host.waitServing,
      checkHealth: (health) => this.checkHealth(health),
      log,
      keep: settings.ota?.keepVersions,
    });
  }

  /** Cleans what a crash left, opens both ports, and finishes an update a crash interrupted. */
  async start(): Promise<void> {
    for (const u of Object.values(this.updaters)) await u.store.recover();
    const coordinator = () => (this.host.isRoot() ? this.coordinator : undefined);
    await listen(memberServer({ secret: this.secret, updaters: this.updaters, coordinator, log: this.log }), OTA_PORT);
    await listen(ownerServer({ trusted: () => trustedKeys(OTA_TRUSTED_KEYS_DIR, this.log), coordinator, status: () => this.status(), log: this.log }), OTA_PUSH_PORT);
    await this.coordinator.resume();
  }

  /** What `pi-image ota status` shows of this node; on the root, of every member. */
  private async status(): Promise<Record<string, unknown>> {
    const versions = async (state: (kind: UpdateKind) => Promise<Record<string, unknown>>) => {
      const [runtime, model] = await Promise.all([state('runtime'), state('model')]);
      return { runtime, model };
    };
    const self = { ...this.host.self(), engine: this.settings.engine.name, ...(await versions(async (kind) => ({ ...(await this.updaters[kind].state()) }))) };
    if (!this.host.isRoot()) return { ...self, nodes: [] };
    const nodes = await Promise.all(
      this.host.workers().map(async (w) => {
        const member = { node: w.node, address: w.address };
        return { ...w, role: 'worker', ...(await versions((kind) => sendCommand(this.secret, member, OTA_PORT, { op: 'state', kind }).catch((e: Error) => ({ error: e.message })))) };
      }),
    );
    return { ...self, nodes, ...this.coordinator.status() };
  }

  /** A completion through the API front at temperature 0; with the bundle's expectation, its output's hash too. */
  private async checkHealth(health: BundleManifest['health']): Promise<string | undefined> {
    const token = await readNodeSecret(API_TOKEN).catch(() => undefined);
    const prompt = health?.prompt ?? 'Hello';
    const res = await fetch(`http://127.0.0.1:${this.settings.cluster.apiPort}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token.toString('utf8')}` } : {}) },
      body: JSON.stringify({ model: this.settings.model?.name, messages: [{ role: 'user', content: prompt }], max_tokens: health?.tokens ?? 4, temperature: 0 }),
      signal: AbortSignal.timeout(10 * 60_000),
    }).catch((e: Error) => e);
    if (res instanceof Error) return `the completion failed: ${res.message}`;
    const body = (await res.json().catch(() => ({}))) as { choices?: { message?: { content?: string }; finish_reason?: string }[] };
    const text = body.choices?.[0]?.message?.content;
    if (res.status !== 200 || typeof text !== 'string' || !body.choices?.[0]?.finish_reason) return `the completion answered ${res.status} without a finished choice`;
    if (health?.textSha256 && healthHash(text) !== health.textSha256) return `the output of ${JSON.stringify(prompt)} hashes to ${healthHash(text).slice(0, 12)}…, the bundle expects ${health.textSha256.slice(0, 12)}…`;
    if (health?.tokenIdsSha256) {
      const ids = await fetch(`http://127.0.0.1:${ENGINE_PRIVATE_PORT}/completion`, { method: 'POST', body: JSON.stringify({ prompt, n_predict: health.tokens, temperature: 0, return_tokens: true, cache_prompt: false }) })
        .then((r) => r.json() as Promise<{ tokens?: number[] }>)
        .catch(() => ({}) as { tokens?: number[] });
      if (!ids.tokens || healthHash(ids.tokens) !== health.tokenIdsSha256) return `the token ids of ${JSON.stringify(prompt)} do not hash to what the bundle expects`;
    }
    return undefined;
  }
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve());
  });
}
