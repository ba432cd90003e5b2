import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { VerifyError } from '../../../../src/host/flash/errors.js';
import type { ByteRange } from '../../../../src/host/flash/ranges.js';
import { verifyRanges } from '../../../../src/host/flash/verify.js';

describe('verifyRanges', () => {
  const image = Buffer.alloc(64 * 1024);
  for (let i = 0; i < image.length; i++) image[i] = (i * 31) & 0xff;
  const ranges: ByteRange[] = [
    { offset: 0, length: 8192, first: 0, last: 1, blockSize: 4096 },
    { offset: 40960, length: 12288, first: 10, last: 12, blockSize: 4096 },
  ];
  const expected = ranges.map((r) => createHash('sha256').update(image.subarray(r.offset, r.offset + r.length)).digest('hex'));
  const reader = (disk: Buffer) => async (o: number, l: number) => Buffer.from(disk.subarray(o, o + l));

  it('passes when every range reads back as written', async () => {
    await expect(verifyRanges({ ranges, expected, algorithm: 'sha256', read: reader(Buffer.from(image)), target: 't' })).resolves.toBeUndefined();
  });

  it('names the block range of a corrupted byte', async () => {
    const disk = Buffer.from(image);
    disk.writeUInt8(disk.readUInt8(11 * 4096 + 5) ^ 0xff, 11 * 4096 + 5);
    const error = await verifyRanges({ ranges, expected, algorithm: 'sha256', read: reader(disk), target: '/dev/sdz' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VerifyError);
    expect((error as VerifyError).range).toMatchObject({ first: 10, last: 12 });
    expect((error as Error).message).toMatch(/\/dev\/sdz differs from the image in blocks 10-12 \(bytes 40960-53247/);
  });

  it('ignores bytes outside the mapped ranges', async () => {
    const disk = Buffer.from(image);
    disk.writeUInt8(disk.readUInt8(20000) ^ 0xff, 20000);
    await expect(verifyRanges({ ranges, expected, algorithm: 'sha256', read: reader(disk), target: 't' })).resolves.toBeUndefined();
  });

  it('reports a short read as an error', async () => {
    await expect(verifyRanges({ ranges, expected, algorithm: 'sha256', read: reader(image.subarray(0, 45000)), target: 't' })).rejects.toThrow(/got \d+ of \d+ bytes/);
  });
});
