import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readlink, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import type { KeyObject } from 'node:crypto';
import { sha256OfFile } from '../../shared/file-hash.js';
import { readBundle } from '../../shared/ota/bundle-read.js';
import { compareVersions, type BundleFile, type BundleManifest } from '../../shared/ota/manifest.js';

/**
 * One kind of thing a node can update (the runtime, or the model), as versioned folders with
 * a `current` link, the way systemd-sysupdate lays them out:
 *
 *   <root>/versions/<version>/…   complete, fsynced, never changed once renamed into place
 *   <root>/current  → versions/<v>   what the engine runs; switched by renaming a new link over it
 *   <root>/previous → versions/<w>   what a rollback goes back to
 *   <root>/staging/<version>         a bundle being unpacked (removed by recover())
 *   <root>/replaced/<version>        an installed version whose files a new bundle of the same
 *                                    version replaces (put back or removed by recover())
 *
 * Every step leaves the store in a state recover() turns into a consistent one: `current`
 * always names a complete version once one was installed.
 */
export class VersionStore {
  constructor(
    readonly root: string,
    /** Test hook: called at each named step, so a test can kill the process exactly there. */
    private readonly step: (name: string) => void = () => undefined,
  ) {}

  private get versions() {
    return join(this.root, 'versions');
  }

  async current(): Promise<string | undefined> {
    return linkTarget(join(this.root, 'current'));
  }

  async previous(): Promise<string | undefined> {
    return linkTarget(join(this.root, 'previous'));
  }

  async installed(): Promise<string[]> {
    return (await readdir(this.versions).catch(() => [] as string[])).sort(compareVersions);
  }

  /** The folder of a version, if it is installed. */
  async path(version: string): Promise<string | undefined> {
    const dir = join(this.versions, version);
    return (await stat(dir).then((s) => s.isDirectory(), () => false)) ? dir : undefined;
  }

  /** Whether an installed version holds exactly these files (each one's size and SHA-256, read back). */
  async holds(version: string, files: Pick<BundleFile, 'path' | 'size' | 'sha256'>[]): Promise<boolean> {
    const dir = await this.path(version);
    if (!dir) return false;
    for (const f of files) {
      const size = await stat(join(dir, f.path)).then((s) => s.size, () => -1);
      if (size !== f.size || (await sha256OfFile(join(dir, f.path))) !== f.sha256) return false;
    }
    return true;
  }

  /**
   * Verifies a bundle as it streams and unpacks it into staging; only a complete, verified and
   * synced copy is renamed into versions/. A failure leaves nothing behind but staging, which
   * recover() removes. `replace`: a version of that name that is installed but not current (a
   * rolled-back build re-pushed with other files) is swapped for the new files.
   */
  async stage(
    bundle: Readable,
    opts: {
      trusted: KeyObject[];
      expect: { arch?: string; engine?: string; kind: BundleManifest['kind'] };
      accept?: (m: BundleManifest) => void | Promise<void>;
      /** A file of our own written beside the bundle's (its names never start with a dot), e.g. the runtime's description. */
      describe?: (m: BundleManifest) => { name: string; content: string } | undefined;
      replace?: boolean;
    },
  ): Promise<BundleManifest> {
    const staging = join(this.root, 'staging', `${process.pid}-${Date.now()}`);
    await mkdir(staging, { recursive: true, mode: 0o755 });
    const written: string[] = [];
    try {
      const manifest = await readBundle(bundle, {
        trusted: opts.trusted,
        expect: opts.expect,
        accept: async (m) => {
          if (await this.path(m.version)) {
            if (!opts.replace) throw new Error(`version ${m.version} is installed already`);
            if ((await this.current()) === m.version) throw new Error(`version ${m.version} runs on this node with other files: pack the new build under another version`);
          }
          await opts.accept?.(m);
        },
        sink: async (file) => {
          const path = join(staging, file.path);
          await mkdir(dirname(path), { recursive: true, mode: 0o755 });
          written.push(path);
          return createWriteStream(path, { mode: file.mode, flags: 'wx' });
        },
      });
      const own = opts.describe?.(manifest);
      if (own) {
        await writeFile(join(staging, own.name), own.content, { mode: 0o644, flag: 'wx' });
        written.push(join(staging, own.name));
      }
      this.step('unpacked');
      for (const path of written) await fsyncPath(path);
      for (const dir of new Set(written.map(dirname))) await fsyncPath(dir);
      await mkdir(this.versions, { recursive: true, mode: 0o755 });
      this.step('synced');
      const replaced = join(this.root, 'replaced', manifest.version);
      if (await this.path(manifest.version)) {
        await mkdir(dirname(replaced), { recursive: true, mode: 0o755 });
        await rm(replaced, { recursive: true, force: true });
        await rename(join(this.versions, manifest.version), replaced);
        this.step('replaced-moved');
      }
      await rename(staging, join(this.versions, manifest.version));
      await fsyncPath(this.versions);
      this.step('staged');
      await rm(replaced, { recursive: true, force: true });
      return manifest;
    } catch (e) {
      await rm(staging, { recursive: true, force: true });
      throw e;
    }
  }

  /** Makes `version` current and what was current the previous one: each link replaced by a rename. */
  async switchTo(version: string): Promise<void> {
    if (!(await this.path(version))) throw new Error(`version ${version} is not installed`);
    const was = await this.current();
    if (was === version) return;
    if (was) await this.link('previous', was);
    this.step('previous-linked');
    await this.link('current', version);
    this.step('switched');
  }

  /** Back to the previous version (after a failed health check). */
  async rollback(): Promise<string> {
    const back = await this.previous();
    if (!back || !(await this.path(back))) throw new Error('there is no previous version to go back to');
    const failed = await this.current();
    await this.link('current', back);
    this.step('rolled-back');
    if (failed) await this.link('previous', failed);
    return back;
  }

  /** Removes versions beyond the newest `keep` (never current or previous). */
  async prune(keep: number): Promise<string[]> {
    const protectedOnes = new Set([await this.current(), await this.previous()]);
    const all = await this.installed();
    const removable = all.filter((v) => !protectedOnes.has(v));
    const excess = Math.max(0, all.length - Math.max(keep, protectedOnes.size));
    const gone = removable.slice(0, excess);
    for (const v of gone) await rm(join(this.versions, v), { recursive: true, force: true });
    return gone;
  }

  /**
   * After a crash: staging and half-made links go; a `current` that names no complete version
   * (it cannot, given the order above, but a card can be damaged) falls back to `previous`.
   */
  async recover(): Promise<{ removed: string[] }> {
    const removed: string[] = [];
    for (const name of await readdir(join(this.root, 'staging')).catch(() => [] as string[])) {
      await rm(join(this.root, 'staging', name), { recursive: true, force: true });
      removed.push(`staging/${name}`);
    }
    // A replacement cut short: the old files go back if the new ones never made it into place.
    for (const name of await readdir(join(this.root, 'replaced')).catch(() => [] as string[])) {
      if (!(await this.path(name))) await rename(join(this.root, 'replaced', name), join(this.versions, name));
      else await rm(join(this.root, 'replaced', name), { recursive: true, force: true });
      removed.push(`replaced/${name}`);
    }
    for (const name of await readdir(this.root).catch(() => [] as string[])) {
      if (/\.new-\d+$/.test(name)) {
        await unlink(join(this.root, name));
        removed.push(name);
      }
    }
    const current = await this.current();
    if (current && !(await this.path(current))) {
      const previous = await this.previous();
      if (previous && (await this.path(previous))) await this.link('current', previous);
    }
    return { removed };
  }

  private async link(name: 'current' | 'previous', version: string): Promise<void> {
    const tmp = join(this.root, `${name}.new-${process.pid}`);
    await rm(tmp, { force: true });
    await symlink(join('versions', version), tmp);
    this.step(`${name}-link-made`);
    await rename(tmp, join(this.root, name));
    await fsyncPath(this.root);
  }
}

async function linkTarget(path: string): Promise<string | undefined> {
  const target = await readlink(path).catch(() => undefined);
  return target?.startsWith('versions/') ? target.slice('versions/'.length) : undefined;
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
