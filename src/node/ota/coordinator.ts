import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { KeyObject } from 'node:crypto';
import { writeFileAtomic } from '../../shared/atomic-write.js';
import { ENGINES } from '../../shared/engines/index.js';
import { readBundle } from '../../shared/ota/bundle-read.js';
import { BundleError, compareVersions, type BundleManifest } from '../../shared/ota/manifest.js';
import { chunkHashes, type BundleSource } from './fetch-bundle.js';
import { handleCommand, needSpace, type NodeUpdater, type OtaCommand, type UpdateKind } from './node-updater.js';
import { isFinal, nextPhase, resumeStep, type UpdatePhase, type UpdateRecord } from './update-steps.js';

export interface Member {
  node: string;
  address: string;
}

export class PushRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface CoordinatorDeps {
  dir: string;
  self: string;
  /** This node's own updaters, one per kind. */
  local: Record<UpdateKind, NodeUpdater>;
  trusted: () => Promise<KeyObject[]>;
  expect: { engine: string; arch: string };
  /** The cluster as it serves now, the root first; undefined when it does not serve (an update needs every node). */
  members: () => Member[] | undefined;
  /** Sends a command to a worker's agent. */
  command: (member: Member, command: OtaCommand) => Promise<Record<string, unknown>>;
  /** Where a worker fetches a bundle from this root. */
  bundleUrl: (member: Member, sha256: string) => string;
  /** Waits until the engine serves with every member (the cluster assembled again), or the bound passes. */
  waitServing: (members: Member[], timeoutMs: number) => Promise<boolean>;
  /** The health check's completion: undefined when it holds, else why not. */
  checkHealth: (health: BundleManifest['health']) => Promise<string | undefined>;
  log: (line: string) => void;
  /** Versions kept on each node after a commit. */
  keep?: number;
  /** How long the engines may take to serve again after a switch. */
  serveTimeoutMs?: number;
  /** Test hook: called as each phase starts, after its record was written. */
  onPhase?: (phase: UpdatePhase) => void;
}

const RECORD = 'update.json';
const HISTORY = 'last-update.json';
/** The last committed update of each kind: its bundle is kept for nodes that were away. */
const COMMITTED = 'committed.json';

/**
 * The root's side of an update: takes a pushed bundle (every check before anything on any
 * node changes), then runs the phases of update-steps.ts across the cluster, writing the
 * record before each; `resume()` finishes an update a crash interrupted.
 */
export class UpdateCoordinator {
  private running?: Promise<void>;
  private record?: UpdateRecord;
  private last?: UpdateRecord;
  private committed: Partial<Record<UpdateKind, UpdateRecord>> = {};

  constructor(private readonly deps: CoordinatorDeps) {}

  private get bundles() {
    return join(this.deps.dir, 'bundles');
  }

  bundlePath(sha256: string): string {
    return join(this.bundles, `${sha256}.bundle`);
  }

  async chunks(sha256: string): Promise<string[] | undefined> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) return undefined;
    return readFile(join(this.bundles, `${sha256}.chunks.json`), 'utf8').then((t) => JSON.parse(t) as string[], () => undefined);
  }

  status(): { update?: UpdateRecord; last?: UpdateRecord } {
    return { ...(this.record ? { update: this.record } : {}), ...(this.last ? { last: this.last } : {}) };
  }

  /** At agent start: an update the record says was under way is finished the safe way (resumeStep). */
  async resume(): Promise<void> {
    this.last = await readJson<UpdateRecord>(join(this.deps.dir, HISTORY));
    this.committed = (await readJson<Partial<Record<UpdateKind, UpdateRecord>>>(join(this.deps.dir, COMMITTED))) ?? {};
    const record = await readJson<UpdateRecord>(join(this.deps.dir, RECORD));
    if (!record) return;
    const step = resumeStep(record.phase);
    this.deps.log(`update ${record.id} was in phase ${record.phase} when the agent stopped: ${step === 'none' ? 'it had ended' : step}`);
    this.record = record;
    if (step === 'none') return this.finish(record);
    this.running = (async () => {
      await this.reachable(record.members);
      if (step === 'refuse') await this.enter(record, 'refused', 'the root restarted while staging; nothing had changed');
      else if (step === 'commit') await this.commit(record);
      else await this.rollBack(record, record.reason ?? 'the root restarted before the new version was proven on every node');
    })().catch((e: unknown) => this.deps.log(`update ${record.id}: ${(e as Error).message}`));
  }

  /**
   * Takes a pushed bundle, a runtime or a model: stored, verified whole (signature, every file,
   * architecture, engine, version, disk space) before anything else happens; then the update
   * runs in the background.
   */
  async push(body: Readable, opts: { allowDowngrade: boolean; contentLength?: number }): Promise<UpdateRecord> {
    if (this.record && !isFinal(this.record.phase)) throw new PushRefused(409, `update ${this.record.id} (${this.record.version}) is in phase ${this.record.phase}: wait for it to end (pi-image ota status)`);
    const members = this.deps.members();
    if (!members) throw new PushRefused(503, 'the cluster does not serve with all its nodes now: an update needs every node (pi-image ota status shows them)');
    await mkdir(this.bundles, { recursive: true, mode: 0o700 });
    if (opts.contentLength !== undefined) await needSpace(this.bundles, opts.contentLength * 2).catch((e: Error) => Promise.reject(new PushRefused(507, e.message)));
    const partial = join(this.bundles, `incoming-${process.pid}-${randomBytes(4).toString('hex')}.part`);
    let manifest: BundleManifest;
    let sums: Awaited<ReturnType<typeof chunkHashes>>;
    try {
      await pipeline(body, createWriteStream(partial, { mode: 0o600 }));
      const states = { runtime: await this.deps.local.runtime.state(), model: await this.deps.local.model.state() };
      manifest = await readBundle(createReadStream(partial), {
        trusted: await this.deps.trusted(),
        expect: this.deps.expect,
        accept: async (m) => {
          const state = states[m.kind];
          if (m.kind === 'model') {
            if (!state.current) throw new PushRefused(400, "this cluster's model is not in the versioned layout model updates replace (an image built before it, or one without a model): rebuild the image with a model");
            if (m.version === state.current) throw new PushRefused(409, `model ${m.version} is the one every node serves already: pack the new model with another --model-version`);
          } else {
            if (!state.current) throw new PushRefused(400, "this cluster's engine does not run from a versioned runtime (an image built before its llama.cpp was one): rebuild and flash the image once, then runtime updates replace it");
            if (!opts.allowDowngrade && compareVersions(m.version, state.current) <= 0) {
              throw new PushRefused(409, `the bundle's ${m.engine} ${m.version} is not newer than the running ${state.current}: push a newer one, or add --allow-downgrade`);
            }
            const known = ENGINES[m.engine].knownVersions;
            if (known.length && !known.includes(m.version)) throw new PushRefused(400, `${m.engine} ${m.version} is not a version this node knows the flags of (${known.join(', ')}): update pi-image's image first`);
          }
          if (m.health?.tokenIdsSha256 && !m.health.textSha256 && m.engine === 'dllama') throw new PushRefused(400, "the bundle's health check expects token ids, which dllama-api does not report: pack it with --health-text-sha256");
          await needSpace(this.bundles, m.files.reduce((s, f) => s + f.size, 0)).catch((e: Error) => Promise.reject(new PushRefused(507, e.message)));
        },
      });
      sums = await chunkHashes(partial);
      await writeFileAtomic(join(this.bundles, `${sums.sha256}.chunks.json`), JSON.stringify(sums.chunks), 0o600);
      await rename(partial, this.bundlePath(sums.sha256));
    } catch (e) {
      await rm(partial, { force: true });
      if (e instanceof BundleError) throw new PushRefused(400, `${e.message} (${e.code}); nothing was changed on any node`);
      if (e instanceof PushRefused) throw new PushRefused(e.status, `${e.message}; nothing was changed on any node`);
      throw e;
    }
    const from = (await this.deps.local[manifest.kind].state()).current ?? '';
    const record: UpdateRecord = {
      id: `u${Date.now().toString(36)}${randomBytes(2).toString('hex')}`,
      kind: manifest.kind,
      engine: manifest.engine,
      version: manifest.version,
      from,
      bundle: { sha256: sums.sha256, size: sums.size },
      members,
      phase: 'staging',
      started: new Date().toISOString(),
      nodes: {},
      timings: {},
    };
    this.record = record;
    await this.save(record);
    this.deps.log(`update ${record.id}: ${manifest.engine} ${manifest.kind} ${from || '(none)'} → ${manifest.version} on ${members.length} node(s)`);
    this.running = this.run(record, manifest, sums.chunks).catch((e: unknown) => this.deps.log(`update ${record.id}: ${(e as Error).message}`));
    return record;
  }

  /** For tests and the agent's stop: the update's background work, ended. */
  async settled(): Promise<void> {
    await this.running;
  }

  private async run(record: UpdateRecord, manifest: BundleManifest, chunks: string[]): Promise<void> {
    this.deps.onPhase?.('staging');
    const files = manifest.files.map(({ path, size, sha256 }) => ({ path, size, sha256 }));
    const staged = await this.onEveryNode(record, async (m) => {
      if (m.node === this.deps.self) {
        await this.deps.local[record.kind].stageFile(record.version, this.bundlePath(record.bundle.sha256), files);
        return { fetched: 0 };
      }
      const source: BundleSource = { url: this.deps.bundleUrl(m, record.bundle.sha256), sha256: record.bundle.sha256, size: record.bundle.size, chunks };
      return this.deps.command(m, { op: 'stage', kind: record.kind, update: record.id, version: record.version, source, files });
    });
    for (const [node, r] of Object.entries(staged.results)) record.nodes[node] = { staged: true, fetched: Number(r.fetched ?? 0) };
    if (!staged.ok) return this.enter(record, 'refused', staged.reason);
    await this.enter(record, 'switching');
    // Every engine is held stopped before any `current` changes: no node serves a mix.
    const switched = await this.onEveryNode(record, (m) => this.send(m, { op: 'switch', kind: record.kind, update: record.id, version: record.version }));
    if (!switched.ok) return this.rollBack(record, switched.reason);
    await this.enter(record, 'checking');
    await this.onEveryNode(record, (m) => this.send(m, { op: 'release', update: record.id }));
    const problem = (await this.deps.waitServing(record.members, this.deps.serveTimeoutMs ?? 15 * 60_000))
      ? await this.deps.checkHealth(manifest.health)
      : `the engines did not serve again with all ${record.members.length} nodes`;
    if (problem) return this.rollBack(record, `health check: ${problem}`);
    await this.commit(record);
  }

  private async commit(record: UpdateRecord): Promise<void> {
    if (record.phase !== 'committing') await this.enter(record, 'committing');
    // After a crash here some nodes may not have switched yet: every node onto the new version.
    await this.onEveryNode(record, async (m) => {
      const state = await this.send(m, { op: 'state', kind: record.kind });
      if (state.current !== record.version) {
        await this.send(m, { op: 'switch', kind: record.kind, update: record.id, version: record.version });
        await this.send(m, { op: 'release', update: record.id });
      }
      return this.send(m, { op: 'commit', kind: record.kind, update: record.id, keep: this.deps.keep ?? 3 });
    });
    await this.enter(record, 'committed');
  }

  private async rollBack(record: UpdateRecord, reason: string): Promise<void> {
    record.reason = reason;
    if (record.phase !== 'rolling-back') await this.enter(record, 'rolling-back');
    this.deps.log(`update ${record.id}: rolling back to ${record.from}: ${reason}`);
    const back = await this.onEveryNode(record, async (m) => {
      const state = await this.send(m, { op: 'state', kind: record.kind });
      if (state.current !== record.from && record.from) await this.send(m, { op: 'switch', kind: record.kind, update: record.id, version: record.from });
      return this.send(m, { op: 'release', update: record.id });
    });
    if (!back.ok) this.deps.log(`update ${record.id}: rollback: ${back.reason}`);
    const serving = await this.deps.waitServing(record.members, this.deps.serveTimeoutMs ?? 15 * 60_000);
    if (!serving) this.deps.log(`update ${record.id}: after the rollback the cluster does not serve yet`);
    await this.enter(record, 'rolled-back');
  }

  /**
   * Before the root's engine starts with these workers: a worker that runs another runtime or
   * model than the root (it was off during an update, or came back from a card of the old
   * image) is brought onto the root's first — switched if it has that version, else staged
   * from the last committed bundle of that kind. Returns the workers it changed (their engines
   * restart; the root starts once they are ready again) and what it could not do.
   */
  async align(workers: Member[]): Promise<{ changed: string[]; problems: string[] }> {
    const changed = new Set<string>();
    const problems: string[] = [];
    for (const kind of ['runtime', 'model'] as const) {
      const want = (await this.deps.local[kind].state()).current;
      if (!want) continue;
      await Promise.all(
        workers.map(async (m) => {
          try {
            const state = (await this.deps.command(m, { op: 'state', kind })) as { current?: string; installed?: string[] };
            if (state.current === want) return;
            if (!state.installed?.includes(want)) {
              const last = this.committed[kind];
              const chunks = last?.version === want ? await this.chunks(last.bundle.sha256) : undefined;
              if (!last || !chunks) throw new Error(`it runs ${kind} ${state.current ?? 'nothing'} and has no ${want}, and no committed bundle of ${want} is kept here`);
              await this.deps.command(m, { op: 'stage', kind, update: last.id, version: want, source: { url: this.deps.bundleUrl(m, last.bundle.sha256), sha256: last.bundle.sha256, size: last.bundle.size, chunks } });
            }
            await this.deps.command(m, { op: 'switch', kind, update: 'align', version: want });
            await this.deps.command(m, { op: 'release', update: 'align' });
            this.deps.log(`update: ${m.node} ran ${kind} ${state.current ?? 'nothing'}; brought onto ${want}`);
            changed.add(m.node);
          } catch (e) {
            problems.push(`${m.node}: ${(e as Error).message}`);
          }
        }),
      );
    }
    return { changed: [...changed], problems };
  }

  /** After a restart, every member's agent must answer before the update is finished (nodes boot at their own pace). */
  private async reachable(members: Member[], timeoutMs = 15 * 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const m of members) {
      while (!(await this.send(m, { op: 'state', kind: 'runtime' }).then(() => true, () => false))) {
        if (Date.now() > deadline) {
          this.deps.log(`update: ${m.node} does not answer; finishing without it (it is brought onto the cluster's version when it joins)`);
          break;
        }
        await new Promise((r) => setTimeout(r, 5000));
      }
    }
  }

  private send(m: Member, command: OtaCommand): Promise<Record<string, unknown>> {
    return m.node === this.deps.self ? handleCommand(this.deps.local, command) : this.deps.command(m, command);
  }

  private async onEveryNode(record: UpdateRecord, work: (m: Member) => Promise<Record<string, unknown>>): Promise<{ ok: true; results: Record<string, Record<string, unknown>> } | { ok: false; reason: string; results: Record<string, Record<string, unknown>> }> {
    const results: Record<string, Record<string, unknown>> = {};
    const errors: string[] = [];
    await Promise.all(
      record.members.map(async (m) => {
        try {
          results[m.node] = await work(m);
        } catch (e) {
          const message = (e as Error).message;
          record.nodes[m.node] = { ...record.nodes[m.node], error: message };
          errors.push(`${m.node}: ${message}`);
        }
      }),
    );
    return errors.length ? { ok: false, reason: errors.join('; '), results } : { ok: true, results };
  }

  /** Writes the record in its next phase (fsync, rename) before that phase's work starts. */
  private async enter(record: UpdateRecord, phase: UpdatePhase, reason?: string): Promise<void> {
    record.timings[record.phase] = (Date.now() - Date.parse(record.started)) / 1000 - Object.values(record.timings).reduce((s, t) => s + (t ?? 0), 0);
    if (phase !== nextPhase(record.phase, { ok: true }) && phase !== nextPhase(record.phase, { ok: false, reason: reason ?? '' }) && !(record.phase === 'rolling-back' && phase === 'rolled-back')) {
      throw new Error(`update ${record.id}: no way from ${record.phase} to ${phase}`);
    }
    record.phase = phase;
    if (reason) record.reason = reason;
    if (isFinal(phase)) record.ended = new Date().toISOString();
    await this.save(record);
    this.deps.log(`update ${record.id}: ${phase}${reason ? ` (${reason})` : ''}`);
    this.deps.onPhase?.(phase);
    if (isFinal(phase)) await this.finish(record);
  }

  /** An ended update: kept as the last one; of the bundles only the last committed one of each kind stays, for nodes that were away. */
  private async finish(record: UpdateRecord): Promise<void> {
    if (record.phase === 'committed') {
      this.committed = { ...this.committed, [record.kind]: record };
      await writeFileAtomic(join(this.deps.dir, COMMITTED), JSON.stringify(this.committed, null, 2));
    }
    await writeFileAtomic(join(this.deps.dir, HISTORY), JSON.stringify(record, null, 2));
    await rm(join(this.deps.dir, RECORD), { force: true });
    const keep = Object.values(this.committed).flatMap((r) => [`${r.bundle.sha256}.bundle`, `${r.bundle.sha256}.chunks.json`]);
    for (const name of await readdir(this.bundles).catch(() => [] as string[])) if (!keep.includes(name)) await rm(join(this.bundles, name), { force: true });
    this.last = record;
    this.record = undefined;
  }

  private async save(record: UpdateRecord): Promise<void> {
    await mkdir(this.deps.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(this.deps.dir, RECORD), JSON.stringify(record, null, 2), 0o600);
  }
}

async function readJson<T>(path: string): Promise<T | undefined> {
  return readFile(path, 'utf8').then((t) => JSON.parse(t) as T, () => undefined);
}

/** SHA-256 of generated text or token ids, as a bundle's health check names them. */
export const healthHash = (value: string | number[]) => createHash('sha256').update(typeof value === 'string' ? value : value.join(',')).digest('hex');
