import { describe, expect, it } from 'vitest';
import type { Bmap } from '../../../../src/host/flash/bmap.js';
import { bmapByteRanges, describeRange, mappedSlices, pieces, totalBytes, wholeImageRanges, type ByteRange } from '../../../../src/host/flash/ranges.js';

const bmap = (imageSize: number, ranges: Bmap['ranges']): Bmap => ({ version: '2.0', imageSize, blockSize: 4096, blocksCount: Math.ceil(imageSize / 4096), mappedBlocksCount: 0, checksumType: 'sha256', ranges });

describe('ranges', () => {
  it('turns block ranges into bytes, the last block cut at the image end', () => {
    const r = bmapByteRanges(bmap(4096 * 10 + 100, [{ first: 0, last: 1, checksum: 'a' }, { first: 9, last: 10, checksum: 'b' }]));
    expect(r.map((x) => [x.offset, x.length])).toEqual([
      [0, 8192],
      [9 * 4096, 4096 + 100],
    ]);
    expect(totalBytes(r)).toBe(8192 + 4196);
    expect(describeRange(r[1] as ByteRange)).toBe('blocks 9-10 (bytes 36864-41059, 4096-byte blocks)');
  });

  it('cuts a whole image into units', () => {
    const r = wholeImageRanges(10 * 4096 + 1, 4096, 4);
    expect(r.map((x) => [x.first, x.last, x.offset, x.length])).toEqual([
      [0, 3, 0, 16384],
      [4, 7, 16384, 16384],
      [8, 10, 32768, 8193],
    ]);
    expect(wholeImageRanges(0)).toEqual([]);
  });

  it('finds the mapped parts of stream chunks, walking the ranges once', () => {
    const ranges: ByteRange[] = [
      { offset: 10, length: 5, first: 0, last: 0, blockSize: 1 },
      { offset: 20, length: 30, first: 0, last: 0, blockSize: 1 },
      { offset: 60, length: 1, first: 0, last: 0, blockSize: 1 },
    ];
    // Chunks of 16 bytes over 0..64: collect every mapped byte offset.
    const seen: number[] = [];
    let next = 0;
    for (let at = 0; at < 64; at += 16) {
      const { slices, nextIndex } = mappedSlices(ranges, next, at, 16);
      for (const s of slices) for (let i = s.start; i < s.end; i++) seen.push(at + i);
      next = nextIndex;
    }
    const want = [...Array(5).keys()].map((i) => 10 + i).concat([...Array(30).keys()].map((i) => 20 + i), [60]);
    expect(seen).toEqual(want);
    expect(next).toBe(3);
    expect(mappedSlices(ranges, 0, 15, 5).slices).toEqual([]);
    expect(mappedSlices(ranges, 0, 0, 100).slices.map((s) => s.rangeIndex)).toEqual([0, 1, 2]);
  });

  it('splits a range into bounded pieces', () => {
    expect([...pieces({ offset: 5, length: 10, first: 0, last: 0, blockSize: 1 }, 4)]).toEqual([
      { offset: 5, length: 4 },
      { offset: 9, length: 4 },
      { offset: 13, length: 2 },
    ]);
  });
});
