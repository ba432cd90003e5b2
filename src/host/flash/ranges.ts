import type { Bmap } from './bmap.js';

/** A run of bytes to write and check: a bmap range in bytes, or a slice of an image without one. */
export interface ByteRange {
  /** Byte offset in the image (and on the target). */
  offset: number;
  length: number;
  /** Blocks, inclusive, for messages ("blocks 100-102"). */
  first: number;
  last: number;
  blockSize: number;
  /** Expected hex digest of the bytes, when known before writing. */
  checksum?: string;
}

/** The mapped byte ranges of a bmap; the last block stops at the image's end. */
export function bmapByteRanges(bmap: Bmap): ByteRange[] {
  return bmap.ranges.map((r) => {
    const offset = r.first * bmap.blockSize;
    const end = Math.min((r.last + 1) * bmap.blockSize, bmap.imageSize);
    return { offset, length: end - offset, first: r.first, last: r.last, blockSize: bmap.blockSize, ...(r.checksum ? { checksum: r.checksum } : {}) };
  });
}

/** The whole image as ranges of at most `unitBlocks` blocks (no checksum: hashed while written). */
export function wholeImageRanges(imageSize: number, blockSize = 4096, unitBlocks = 16384): ByteRange[] {
  const ranges: ByteRange[] = [];
  const blocks = Math.ceil(imageSize / blockSize);
  for (let first = 0; first < blocks; first += unitBlocks) {
    const last = Math.min(blocks, first + unitBlocks) - 1;
    const offset = first * blockSize;
    ranges.push({ offset, length: Math.min((last + 1) * blockSize, imageSize) - offset, first, last, blockSize });
  }
  return ranges;
}

export function totalBytes(ranges: readonly ByteRange[]): number {
  return ranges.reduce((sum, r) => sum + r.length, 0);
}

/** "blocks 100-102 (bytes 409600-421887)": how a range is named in every message. */
export function describeRange(r: ByteRange): string {
  const blocks = r.first === r.last ? `block ${r.first}` : `blocks ${r.first}-${r.last}`;
  return `${blocks} (bytes ${r.offset}-${r.offset + r.length - 1}, ${r.blockSize}-byte blocks)`;
}

/**
 * The parts of a stream chunk that fall in mapped ranges. `chunkOffset` is where the chunk
 * starts in the image; `fromIndex` is the first range that may still be reached (ranges are
 * sorted), returned advanced so that a sequential reader walks the ranges once.
 */
export function mappedSlices(
  ranges: readonly ByteRange[],
  fromIndex: number,
  chunkOffset: number,
  chunkLength: number,
): { slices: { rangeIndex: number; offset: number; start: number; end: number }[]; nextIndex: number } {
  const slices: { rangeIndex: number; offset: number; start: number; end: number }[] = [];
  const chunkEnd = chunkOffset + chunkLength;
  let i = fromIndex;
  while (i < ranges.length) {
    const r = ranges[i] as ByteRange;
    const rEnd = r.offset + r.length;
    if (rEnd <= chunkOffset) {
      i++;
      continue;
    }
    if (r.offset >= chunkEnd) break;
    const start = Math.max(r.offset, chunkOffset);
    const end = Math.min(rEnd, chunkEnd);
    slices.push({ rangeIndex: i, offset: start, start: start - chunkOffset, end: end - chunkOffset });
    if (rEnd <= chunkEnd) i++;
    else break;
  }
  return { slices, nextIndex: i };
}

/** Splits a range into pieces of at most `max` bytes (reads and writes of a bounded size). */
export function* pieces(r: ByteRange, max: number): Generator<{ offset: number; length: number }> {
  for (let at = r.offset; at < r.offset + r.length; at += max) yield { offset: at, length: Math.min(max, r.offset + r.length - at) };
}
