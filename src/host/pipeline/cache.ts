import { mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { silentReporter, type Reporter } from '../progress.js';
import { checkRecord, fsyncPath, writeRecord } from './cache-record.js';

/**
 * Stage outputs keyed by content hash under $PI_IMAGE_CACHE/<stage>/<key>/.
 * An entry is built in a sibling temporary folder, recorded (every file's size and SHA-256,
 * written last, all fsynced) and renamed into place. It is reused only when its files still
 * match the record; any other entry (damaged, from an older pi-image, cut short by a crash)
 * is reported, discarded and rebuilt. An interrupted build leaves only a temporary folder,
 * removed by the next prune.
 */
export class StageCache {
  constructor(
    readonly root: string,
    private readonly reporter: Reporter = silentReporter,
  ) {}

  entry(stage: string, key: string): string {
    return join(this.root, stage, key);
  }

  /** True when the entry is there and matches its record; a bad entry is reported and removed. */
  async has(stage: string, key: string): Promise<boolean> {
    const dir = this.entry(stage, key);
    const st = await stat(dir).catch(() => undefined);
    if (!st?.isDirectory()) return false;
    let shown = -1; // one progress event per percent, not one per MiB hashed
    const problem = await checkRecord(dir, (fraction, file) => {
      if (Math.floor(fraction * 100) === shown) return;
      shown = Math.floor(fraction * 100);
      this.reporter.emit({ type: 'stage-progress', stage, fraction, detail: `checking the cached ${file}` });
    });
    if (problem) {
      this.reporter.emit({ type: 'warning', message: `cache entry ${stage}/${key} ${problem}; discarded, rebuilding it` });
      await rm(dir, { recursive: true, force: true });
      return false;
    }
    const now = new Date();
    await utimes(dir, now, now); // most recently used: kept by prune
    return true;
  }

  /** Runs `produce` into a temporary folder and publishes it as the entry for `key`. */
  async fill(stage: string, key: string, produce: (dir: string) => Promise<unknown>): Promise<string> {
    const final = this.entry(stage, key);
    const tmp = `${final}.partial-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    try {
      await produce(tmp);
      await writeRecord(tmp, (file) => this.reporter.emit({ type: 'stage-progress', stage, detail: `recording the checksum of ${file}` }));
      await rm(final, { recursive: true, force: true });
      await rename(tmp, final);
      await fsyncPath(join(this.root, stage)); // the rename itself survives a crash
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
    return final;
  }

  /** The entry for `key`: reused when it checks out, else (re)built. */
  async use(stage: string, key: string, produce: (dir: string) => Promise<unknown>): Promise<{ dir: string; cached: boolean }> {
    if (await this.has(stage, key)) return { dir: this.entry(stage, key), cached: true };
    return { dir: await this.fill(stage, key, produce), cached: false };
  }

  /** Keeps the `keep` most recently used entries of a stage, and drops leftovers of dead builds. */
  async prune(stage: string, keep: number): Promise<void> {
    const dir = join(this.root, stage);
    const names = await readdir(dir).catch(() => [] as string[]);
    const entries: { name: string; mtime: number }[] = [];
    for (const name of names) {
      const partial = /\.partial-(\d+)$/.exec(name);
      if (partial) {
        if (!processAlive(Number(partial[1]))) await rm(join(dir, name), { recursive: true, force: true });
        continue;
      }
      const st = await stat(join(dir, name)).catch(() => undefined);
      if (st?.isDirectory()) entries.push({ name, mtime: st.mtimeMs });
    }
    entries.sort((a, b) => b.mtime - a.mtime);
    for (const old of entries.slice(keep)) await rm(join(dir, old.name), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
