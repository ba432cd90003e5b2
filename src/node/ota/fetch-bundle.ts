import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, stat, truncate } from 'node:fs/promises';

/** Bundles travel in chunks of this size, each with its own SHA-256 from the root. */
export const CHUNK_BYTES = 4 << 20;

/** SHA-256 of every CHUNK_BYTES piece of a file, and of the whole. */
export async function chunkHashes(path: string): Promise<{ sha256: string; chunks: string[]; size: number }> {
  const whole = createHash('sha256');
  const chunks: string[] = [];
  let piece = createHash('sha256');
  let inPiece = 0;
  let size = 0;
  for await (const data of createReadStream(path, { highWaterMark: 1 << 20 })) {
    let buf = data as Buffer;
    whole.update(buf);
    size += buf.length;
    while (buf.length) {
      const take = Math.min(buf.length, CHUNK_BYTES - inPiece);
      piece.update(buf.subarray(0, take));
      inPiece += take;
      buf = buf.subarray(take);
      if (inPiece === CHUNK_BYTES) {
        chunks.push(piece.digest('hex'));
        piece = createHash('sha256');
        inPiece = 0;
      }
    }
  }
  if (inPiece) chunks.push(piece.digest('hex'));
  return { sha256: whole.digest('hex'), chunks, size };
}

export interface BundleSource {
  url: string;
  sha256: string;
  size: number;
  chunks: string[];
}

/**
 * Downloads a bundle to `dest` with HTTP range requests, resuming from what an earlier,
 * interrupted attempt left in `dest.part`: every complete chunk there is checked against its
 * hash first (a damaged tail is cut off), every new chunk is checked as it arrives, and the
 * whole file against the bundle's SHA-256 before it is renamed to `dest`. Returns the bytes
 * this call fetched.
 */
export async function fetchBundle(source: BundleSource, dest: string, opts: { attempts?: number; onBytes?: (n: number) => void; fetchImpl?: typeof fetch } = {}): Promise<{ fetched: number; resumedAt: number }> {
  const done = await stat(dest).then((s) => s.size === source.size, () => false);
  if (done && (await chunkHashes(dest)).sha256 === source.sha256) return { fetched: 0, resumedAt: source.size };
  const part = `${dest}.part`;
  let offset = await verifiedPrefix(part, source.chunks);
  const resumedAt = offset;
  let fetched = 0;
  const doFetch = opts.fetchImpl ?? fetch;
  for (let attempt = 1; offset < source.size; attempt++) {
    try {
      const res = await doFetch(source.url, { headers: { range: `bytes=${offset}-` } });
      if (res.status !== 206 || !res.body) throw new Error(`the root answered ${res.status} to a range request`);
      const file = await open(part, 'a');
      try {
        let piece = createHash('sha256');
        let inPiece = 0;
        for await (const data of res.body as unknown as AsyncIterable<Uint8Array>) {
          let buf = Buffer.from(data);
          while (buf.length) {
            const take = Math.min(buf.length, CHUNK_BYTES - inPiece, source.size - offset - inPiece);
            if (take <= 0) throw new Error('the root sent more than the bundle holds');
            piece.update(buf.subarray(0, take));
            await file.write(buf.subarray(0, take));
            inPiece += take;
            buf = buf.subarray(take);
            if (inPiece === CHUNK_BYTES || offset + inPiece === source.size) {
              const index = Math.floor(offset / CHUNK_BYTES);
              if (piece.digest('hex') !== source.chunks[index]) {
                await file.truncate(offset);
                throw new Error(`chunk ${index} does not match its hash`);
              }
              offset += inPiece;
              fetched += inPiece;
              opts.onBytes?.(inPiece);
              piece = createHash('sha256');
              inPiece = 0;
            }
          }
        }
        await file.sync();
      } finally {
        await file.close();
      }
      if (offset < source.size) throw new Error(`the transfer ended after ${offset} of ${source.size} bytes`);
    } catch (e) {
      // Only verified chunks stay: the next attempt, or the next update, resumes there.
      await truncate(part, offset).catch(() => undefined);
      if (attempt >= (opts.attempts ?? 5)) throw new Error(`fetching ${source.url}: ${(e as Error).message} (after ${attempt} attempts; ${offset} bytes kept for the next try)`);
      await new Promise((r) => setTimeout(r, 1000 * attempt));
    }
  }
  if ((await chunkHashes(part)).sha256 !== source.sha256) {
    await truncate(part, 0);
    throw new Error(`the downloaded bundle does not match its SHA-256 ${source.sha256}`);
  }
  await rename(part, dest);
  return { fetched, resumedAt };
}

/** How many leading bytes of `part` are whole chunks matching their hashes; the rest is cut off. */
async function verifiedPrefix(part: string, chunks: string[]): Promise<number> {
  const size = await stat(part).then((s) => s.size, () => -1);
  if (size < 0) return 0;
  let good = 0;
  const full = Math.floor(size / CHUNK_BYTES);
  for (let i = 0; i < Math.min(full, chunks.length); i++) {
    const hash = createHash('sha256');
    for await (const data of createReadStream(part, { start: i * CHUNK_BYTES, end: (i + 1) * CHUNK_BYTES - 1 })) hash.update(data as Buffer);
    if (hash.digest('hex') !== chunks[i]) break;
    good = (i + 1) * CHUNK_BYTES;
  }
  await truncate(part, good);
  return good;
}
