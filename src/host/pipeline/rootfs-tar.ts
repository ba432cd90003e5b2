import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Transform } from 'node:stream';
import * as tar from 'tar-stream';

/** tar-stream's header, with the pax records it keeps (its typings leave them out). */
export type TarHeader = Partial<tar.Header> & { name: string; pax?: Record<string, string> | null };

/** Tar names as `etc/hostname` (no leading ./ or /, no trailing /); the root is ''. */
export function normalizeName(name: string): string {
  return name.replace(/^\.?\/+/, '').replace(/^\.$/, '').replace(/\/+$/, '');
}

/** Reads a tar file entry by entry; `onProgress` gets the fraction of the file read so far. */
export async function* readTar(
  path: string,
  onProgress?: (fraction: number) => void,
): AsyncGenerator<{ header: TarHeader; name: string; body: NodeJS.ReadableStream }> {
  const total = (await stat(path)).size || 1;
  let read = 0;
  let lastReported = -1;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      read += chunk.length;
      const pct = Math.floor((read / total) * 100);
      if (onProgress && pct !== lastReported) {
        lastReported = pct;
        onProgress(read / total);
      }
      done(null, chunk);
    },
  });
  const extract = tar.extract();
  createReadStream(path, { highWaterMark: 1 << 20 }).pipe(counter).pipe(extract);
  for await (const entry of extract) {
    yield { header: entry.header as TarHeader, name: normalizeName(entry.header.name), body: entry as unknown as NodeJS.ReadableStream };
  }
}

export async function readAll(body: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

export async function drain(body: NodeJS.ReadableStream): Promise<void> {
  for await (const _ of body) {
    /* discard */
  }
}

/** Adds one entry to a pack, streaming its body when it has one. */
export function packEntry(pack: tar.Pack, header: TarHeader, body?: NodeJS.ReadableStream | Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (body === undefined || Buffer.isBuffer(body)) {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (body === undefined) pack.entry(header, done);
      else pack.entry(header, body, done);
      return;
    }
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    body.on('error', reject);
    body.pipe(sink as unknown as NodeJS.WritableStream);
  });
}

/** Pax records that survive a rewrite: extended attributes (file capabilities, ACLs). Times, names and sizes come from the header. */
export function keptPax(pax: Record<string, string> | null | undefined): Record<string, string> | null {
  if (!pax) return null;
  const kept = Object.fromEntries(Object.entries(pax).filter(([k]) => k.startsWith('SCHILY.xattr.') || k.startsWith('LIBARCHIVE.xattr.')));
  return Object.keys(kept).length ? kept : null;
}
