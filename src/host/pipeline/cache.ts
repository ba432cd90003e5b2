import { mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Stage outputs keyed by content hash under $PI_IMAGE_CACHE/<stage>/<key>/.
 * An entry is built in a sibling temporary folder and renamed into place, so an entry
 * that exists is complete; an interrupted build leaves only a temporary folder,
 * removed by the next prune.
 */
export class StageCache {
  constructor(readonly root: string) {}

  entry(stage: string, key: string): string {
    return join(this.root, stage, key);
  }

  async has(stage: string, key: string): Promise<boolean> {
    const st = await stat(this.entry(stage, key)).catch(() => undefined);
    if (!st?.isDirectory()) return false;
    const now = new Date();
    await utimes(this.entry(stage, key), now, now); // most recently used: kept by prune
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
      await rm(final, { recursive: true, force: true });
      await rename(tmp, final);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
    return final;
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
