import { createReadStream } from 'node:fs';
import { mkdir, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { MODEL_INFO, RUNTIME_INFO } from '../../shared/node-paths.js';
import type { BundleFile, BundleManifest } from '../../shared/ota/manifest.js';
import { modelInfoOf, runtimeInfoOf } from '../../shared/ota/version-info.js';
import { fetchBundle, type BundleSource } from './fetch-bundle.js';
import { VersionStore } from './version-store.js';

/** What an update replaces: the engine's programs, or the model it loads. */
export type UpdateKind = BundleManifest['kind'];

/** What the root asks of a node during an update (over OTA_PORT, or directly for itself). */
export type OtaCommand =
  /** `files`: the bundle's, so a node that has a folder of that version checks it holds these very files. */
  | { op: 'stage'; kind: UpdateKind; update: string; version: string; source: BundleSource; files?: ContentList }
  | { op: 'switch'; kind: UpdateKind; update: string; version: string }
  | { op: 'release'; update: string }
  | { op: 'commit'; kind: UpdateKind; update: string; keep: number }
  | { op: 'state'; kind: UpdateKind };

/** What a version's folder must hold, as a bundle's manifest lists it. */
export type ContentList = Pick<BundleFile, 'path' | 'size' | 'sha256'>[];

export interface NodeVersionState {
  current?: string;
  previous?: string;
  installed: string[];
}

/** How an updater reaches the agent's engine: held stopped while `current` changes, released onto what `current` names then. */
export interface EngineHold {
  hold(reason: string): Promise<void>;
  release(): Promise<void>;
}

/**
 * One node's part of an update of one kind, each step safe to repeat (the root repeats a step
 * after a crash): stage a version (download resumably, verify, unpack into the store), switch
 * `current` with the engine held stopped, let the engine run again, prune old versions.
 */
export class NodeUpdater {
  readonly store: VersionStore;

  constructor(
    private readonly opts: {
      kind: UpdateKind;
      /** The kind's versioned folders (RUNTIME_DIR, MODEL_DIR). */
      dir: string;
      downloadDir: string;
      trusted: () => Promise<KeyObject[]>;
      expect: { engine: string; arch: string };
      engine: EngineHold;
      log: (line: string) => void;
    },
  ) {
    this.store = new VersionStore(opts.dir);
  }

  get kind(): UpdateKind {
    return this.opts.kind;
  }

  async handle(command: OtaCommand): Promise<Record<string, unknown>> {
    switch (command.op) {
      case 'state':
        return { ...(await this.state()) };
      case 'stage':
        return this.stageRemote(command.version, command.source, command.files);
      case 'switch':
        await this.switchTo(command.version, `update ${command.update} switching the ${this.kind} to ${command.version}`);
        return { current: command.version };
      case 'release':
        await this.opts.engine.release();
        return { current: await this.store.current() };
      case 'commit':
        return { pruned: await this.store.prune(command.keep) };
    }
  }

  async state(): Promise<NodeVersionState> {
    const [current, previous, installed] = await Promise.all([this.store.current(), this.store.previous(), this.store.installed()]);
    return { ...(current ? { current } : {}), ...(previous ? { previous } : {}), installed };
  }

  /**
   * Whether `version` is staged already: with `files`, only when its folder holds exactly them
   * (a build rolled back and pushed again under the same version with other files is staged anew).
   */
  private async hasStaged(version: string, files?: ContentList): Promise<boolean> {
    if (!(await this.store.path(version))) return false;
    if (!files || (await this.store.holds(version, files))) return true;
    this.opts.log(`update: the ${this.kind} ${version} on this node holds other files than the bundle's: staged again`);
    return false;
  }

  /** Stages a bundle file already on this node (the root's copy). */
  async stageFile(version: string, file: string, files?: ContentList): Promise<BundleManifest | undefined> {
    if (await this.hasStaged(version, files)) return undefined;
    return this.unpack(version, file, files !== undefined);
  }

  /** Unpacks a bundle file into the store; `replace`: over a folder of that version that holds other files. */
  private async unpack(version: string, file: string, replace: boolean): Promise<BundleManifest> {
    await this.store.recover();
    return this.store.stage(createReadStream(file), {
      replace,
      trusted: await this.opts.trusted(),
      expect: { kind: this.kind, ...this.opts.expect },
      accept: async (m) => {
        if (m.version !== version) throw new Error(`the bundle holds version ${m.version}, not ${version}`);
        await needSpace(this.opts.dir, m.files.reduce((s, f) => s + f.size, 0));
      },
      describe: (m) =>
        this.kind === 'runtime'
          ? { name: RUNTIME_INFO, content: `${JSON.stringify(runtimeInfoOf(m), null, 2)}\n` }
          : { name: MODEL_INFO, content: `${JSON.stringify(modelInfoOf(m), null, 2)}\n` },
    });
  }

  private async stageRemote(version: string, source: BundleSource, files?: ContentList): Promise<Record<string, unknown>> {
    if (await this.hasStaged(version, files)) return { staged: version, fetched: 0 };
    await mkdir(this.opts.downloadDir, { recursive: true, mode: 0o700 });
    await needSpace(this.opts.downloadDir, source.size);
    const file = join(this.opts.downloadDir, `${source.sha256}.bundle`);
    const { fetched, resumedAt } = await fetchBundle(source, file);
    if (resumedAt) this.opts.log(`update: resumed the download of ${version} at byte ${resumedAt}`);
    try {
      // Checked above already: unpacked without reading the old folder back again.
      await this.unpack(version, file, files !== undefined);
    } finally {
      await rm(file, { force: true });
    }
    return { staged: version, fetched, resumedAt };
  }

  /** Holds the engine stopped and points `current` at `version` (a rollback is a switch back). */
  async switchTo(version: string, reason: string): Promise<void> {
    if (!(await this.store.path(version))) throw new Error(`version ${version} is not staged on this node`);
    await this.opts.engine.hold(reason);
    await this.store.switchTo(version);
    this.opts.log(`update: ${this.kind} ${version} is current`);
  }
}

/** A node's updaters, one per kind: a command goes to the one of its kind (`release` is the engine's, any will do). */
export function handleCommand(updaters: Record<UpdateKind, NodeUpdater>, command: OtaCommand): Promise<Record<string, unknown>> {
  return updaters['kind' in command ? command.kind : 'runtime'].handle(command);
}

/** Refuses a step that would fill the disk: `bytes` and a margin must be free where they go. */
export async function needSpace(dir: string, bytes: number): Promise<void> {
  const st = await statfs(dir).catch(() => undefined);
  if (!st) return;
  const free = st.bavail * st.bsize;
  const margin = 64 << 20;
  if (free < bytes + margin) throw new Error(`not enough disk space: ${Math.ceil((bytes + margin) / 2 ** 20)} MiB needed in ${dir}, ${Math.floor(free / 2 ** 20)} MiB free`);
}
