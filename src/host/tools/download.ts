import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sha256OfFile } from '../../shared/file-hash.js';
import { PiImageError } from '../errors.js';
import type { Reporter } from '../progress.js';

/**
 * A pinned input file: a local path, or a URL downloaded once into the cache under its
 * sha256. Either way the hash is checked; a mismatch is an error, never a warning.
 */
export async function pinnedFile(source: string, sha256: string, opts: { cacheDir: string; stage: string; reporter: Reporter; signal?: AbortSignal; what?: string }): Promise<string> {
  // The config key the file came from, in every message: base.image, engine.source.
  const what = opts.what ?? 'base.image';
  const pin = what.replace(/\.\w+$/, '.sha256');
  const progress = (detail: string) => (fraction: number) => opts.reporter.emit({ type: 'stage-progress', stage: opts.stage, fraction, detail });
  if (!/^https?:\/\//.test(source)) {
    const st = await stat(source).catch(() => undefined);
    if (!st?.isFile()) throw new PiImageError(`${what}: ${source} does not exist or is not a file`);
    const actual = await sha256OfFile(source, progress(`verifying ${source}`));
    if (actual !== sha256) throw new PiImageError(`${what}: ${source} has sha256 ${actual}, not the ${sha256} the config pins`, `check ${pin} against the file you meant (sha256sum)`);
    return source;
  }
  const dir = join(opts.cacheDir, 'downloads');
  const cached = join(dir, sha256);
  if (await stat(cached).then((s) => s.isFile(), () => false)) return cached;
  await mkdir(dir, { recursive: true });
  const partial = `${cached}.partial-${process.pid}`;
  try {
    const response = await fetch(source, { signal: opts.signal });
    if (!response.ok || !response.body) throw new PiImageError(`${what}: downloading ${source} failed: HTTP ${response.status}`);
    const total = Number(response.headers.get('content-length')) || 0;
    const hash = createHash('sha256');
    let read = 0;
    const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      read += chunk.length;
      if (total) progress(`downloading ${source}`)(read / total);
    });
    await pipeline(body, createWriteStream(partial));
    const actual = hash.digest('hex');
    if (actual !== sha256) throw new PiImageError(`${what}: the download of ${source} has sha256 ${actual}, not the ${sha256} the config pins`, 'the file changed or the pin is wrong; nothing was cached');
    await rename(partial, cached);
    return cached;
  } catch (e) {
    await rm(partial, { force: true });
    if (e instanceof PiImageError) throw e;
    throw new PiImageError(`${what}: cannot download ${source}: ${(e as Error).message}`, 'check the URL and the network, or download it yourself and give its path');
  }
}
