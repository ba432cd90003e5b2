import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';

/** A file's SHA-256 (hex), read in 1 MiB chunks; `onProgress` gets the fraction read. */
export async function sha256OfFile(path: string, onProgress?: (fraction: number) => void): Promise<string> {
  const total = (await stat(path)).size || 1;
  const hash = createHash('sha256');
  let read = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    read += (chunk as Buffer).length;
    onProgress?.(read / total);
  }
  return hash.digest('hex');
}
