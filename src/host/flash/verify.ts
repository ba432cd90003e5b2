import { createHash } from 'node:crypto';
import { VerifyError } from './errors.js';
import { describeRange, pieces, type ByteRange } from './ranges.js';

export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/** Digest of one range as read through `read`, in pieces of at most `pieceBytes`. */
export async function digestRange(read: ReadAt, range: ByteRange, algorithm: string, pieceBytes = 4 << 20, onBytes?: (n: number) => void, signal?: AbortSignal): Promise<string> {
  const hash = createHash(algorithm);
  for (const piece of pieces(range, pieceBytes)) {
    signal?.throwIfAborted();
    const data = await read(piece.offset, piece.length);
    if (data.length !== piece.length) throw new VerifyError(range, `reading back ${describeRange(range)}: got ${data.length} of ${piece.length} bytes at ${piece.offset}`);
    hash.update(data);
    onBytes?.(data.length);
  }
  return hash.digest('hex');
}

/**
 * Reads every range back and compares its digest with the expected one (the bmap's, or the one
 * computed while writing). The first mismatch is an error naming the block range.
 */
export async function verifyRanges(opts: {
  ranges: readonly ByteRange[];
  /** Expected digest per range (index-aligned with ranges). */
  expected: readonly string[];
  algorithm: string;
  read: ReadAt;
  target: string;
  onBytes?: (n: number) => void;
  signal?: AbortSignal;
}): Promise<void> {
  for (const [i, range] of opts.ranges.entries()) {
    const expected = opts.expected[i];
    if (!expected) throw new Error(`no expected digest for range ${i}`);
    const actual = await digestRange(opts.read, range, opts.algorithm, undefined, opts.onBytes, opts.signal);
    if (actual !== expected) {
      throw new VerifyError(
        range,
        `verify failed: ${opts.target} differs from the image in ${describeRange(range)} (${opts.algorithm} ${actual}, expected ${expected})`,
        'the target did not keep what was written: flash again; if it fails again at the same place, the card or disk is failing',
      );
    }
  }
}
