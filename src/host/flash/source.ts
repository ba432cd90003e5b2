import { promises as fs } from 'node:fs';
import { startTool, type ToolProcess } from '../tools/run.js';
import { StageError } from '../errors.js';
import { ImageMismatchError } from './errors.js';
import { mappedSlices, pieces, type ByteRange } from './ranges.js';

/** A piece of mapped image data: where it goes and which range it belongs to. */
export interface Chunk {
  rangeIndex: number;
  offset: number;
  /** Valid only until the next chunk is asked for (buffers are reused). */
  data: Buffer;
}

export interface ImageSource {
  readonly path: string;
  /** Yields the bytes of every range, in order. */
  chunks(ranges: readonly ByteRange[], signal?: AbortSignal): AsyncGenerator<Chunk>;
}

const PIECE = 4 << 20;

/** An uncompressed image: each range read at its offset, holes never read. */
export class FileSource implements ImageSource {
  constructor(readonly path: string) {}
  async *chunks(ranges: readonly ByteRange[], signal?: AbortSignal): AsyncGenerator<Chunk> {
    const handle = await fs.open(this.path, 'r');
    const buffer = Buffer.allocUnsafe(PIECE);
    try {
      for (const [rangeIndex, range] of ranges.entries()) {
        for (const piece of pieces(range, PIECE)) {
          signal?.throwIfAborted();
          let done = 0;
          while (done < piece.length) {
            const { bytesRead } = await handle.read(buffer, done, piece.length - done, piece.offset + done);
            if (bytesRead === 0) throw new ImageMismatchError(`${this.path} ends at byte ${piece.offset + done}, inside the mapped range at ${range.offset}: the image is cut short or the bmap is another image's`);
            done += bytesRead;
          }
          yield { rangeIndex, offset: piece.offset, data: buffer.subarray(0, piece.length) };
        }
      }
    } finally {
      await handle.close();
    }
  }
}

/**
 * A .zst image, decompressed by zstd as a stream: read in order, unmapped bytes discarded,
 * mapped bytes gathered into pieces of up to 4 MiB. zstd is stopped once the last range is read.
 */
export class ZstdSource implements ImageSource {
  constructor(readonly path: string) {}
  async *chunks(ranges: readonly ByteRange[], signal?: AbortSignal): AsyncGenerator<Chunk> {
    const zstd: ToolProcess = startTool('zstd', ['-d', '-c', '-q', '--', this.path]);
    const stderr: string[] = [];
    zstd.stderr?.setEncoding('utf8').on('data', (s: string) => stderr.push(...s.split('\n').filter(Boolean)));
    const onAbort = () => zstd.kill();
    signal?.addEventListener('abort', onAbort);
    const pending = Buffer.allocUnsafe(PIECE);
    let pendingLength = 0;
    let pendingOffset = 0;
    let pendingRange = -1;
    let position = 0;
    let next = 0;
    try {
      if (!zstd.stdout) throw new Error('zstd has no output stream');
      for await (const chunk of zstd.stdout as AsyncIterable<Buffer>) {
        signal?.throwIfAborted();
        const { slices, nextIndex } = mappedSlices(ranges, next, position, chunk.length);
        for (const s of slices) {
          let start = s.start;
          while (start < s.end) {
            const contiguous = pendingRange === s.rangeIndex && pendingOffset + pendingLength === position + start;
            if (pendingLength > 0 && (!contiguous || pendingLength === PIECE)) {
              yield { rangeIndex: pendingRange, offset: pendingOffset, data: pending.subarray(0, pendingLength) };
              pendingLength = 0;
            }
            if (pendingLength === 0) {
              pendingOffset = position + start;
              pendingRange = s.rangeIndex;
            }
            const n = Math.min(s.end - start, PIECE - pendingLength);
            chunk.copy(pending, pendingLength, start, start + n);
            pendingLength += n;
            start += n;
          }
        }
        next = nextIndex;
        position += chunk.length;
        if (next >= ranges.length) break;
      }
      signal?.throwIfAborted();
      if (pendingLength > 0) yield { rangeIndex: pendingRange, offset: pendingOffset, data: pending.subarray(0, pendingLength) };
      if (next < ranges.length) {
        const ended = await zstd.ended;
        if (ended.exitCode !== 0) throw new StageError('write', `zstd could not decompress ${this.path} (${ended.signal ? `signal ${ended.signal}` : `exit code ${ended.exitCode}`})`, 'the .zst is damaged or cut short: download or build it again', `zstd -d -c -q -- ${this.path}`, stderr.slice(-10));
        throw new ImageMismatchError(`${this.path} decompresses to ${position} bytes, which ends before the mapped range at byte ${ranges[next]?.offset}: the .zst is cut short or the bmap is another image's`);
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      zstd.kill();
      await zstd.ended;
    }
  }
}

/** The decompressed size zstd recorded in the frame header (`zstd -lv`), when it did. */
export async function zstdContentSize(path: string): Promise<number | undefined> {
  const lister = startTool('zstd', ['-lv', '--', path]);
  let text = '';
  lister.stdout?.setEncoding('utf8').on('data', (s: string) => (text += s));
  lister.stderr?.setEncoding('utf8').on('data', (s: string) => (text += s));
  const ended = await lister.ended;
  if (ended.exitCode !== 0) return undefined;
  const m = /Decompressed Size:.*\((\d+) B\)/.exec(text);
  return m ? Number(m[1]) : undefined;
}
