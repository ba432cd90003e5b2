import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHUNK_BYTES, chunkHashes, fetchBundle } from '../../../../src/node/ota/fetch-bundle.js';

const work = mkdtempSync(join(tmpdir(), 'pi-image-fetch-'));
const SIZE = CHUNK_BYTES * 2 + 12345;
const data = randomBytes(SIZE);
const file = join(work, 'bundle');
writeFileSync(file, data);
let server: Server;
let url = '';
/** What the next requests do: cut the connection after N bytes, or flip a byte of the answer. */
const faults: ({ cutAfter: number } | { flipAt: number })[] = [];
const ranges: number[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const start = Number(/^bytes=(\d+)-$/.exec(String(req.headers.range))?.[1] ?? 0);
    ranges.push(start);
    const fault = faults.shift();
    const body = Buffer.from(data.subarray(start));
    if (fault && 'flipAt' in fault) body.writeUInt8(body.readUInt8(fault.flipAt) ^ 1, fault.flipAt);
    res.writeHead(206, { 'content-length': body.length, 'content-range': `bytes ${start}-${SIZE - 1}/${SIZE}` });
    if (fault && 'cutAfter' in fault) {
      // Sent, read by the client, then the connection ends early (a dropped link).
      res.write(body.subarray(0, fault.cutAfter), () => setTimeout(() => res.socket?.end(), 500));
    } else res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/b`;
});
afterAll(() => {
  server.close();
  rmSync(work, { recursive: true, force: true });
});

describe('fetching a bundle from the root', () => {
  it('resumes an interrupted transfer at the last whole chunk instead of starting over', async () => {
    const sums = await chunkHashes(file);
    expect(sums.chunks).toHaveLength(3);
    faults.push({ cutAfter: CHUNK_BYTES + 1000 });
    ranges.length = 0;
    const dest = join(work, 'a.bundle');
    const got = await fetchBundle({ url, ...sums }, dest);
    expect(readFileSync(dest).equals(data)).toBe(true);
    // The second request started where the first one's whole chunks ended.
    expect(ranges).toEqual([0, CHUNK_BYTES]);
    expect(got.fetched).toBe(SIZE);
  });

  it('a download interrupted in an earlier run goes on from its verified part', async () => {
    const sums = await chunkHashes(file);
    const dest = join(work, 'b.bundle');
    // An earlier run kept one whole chunk and half of the next one.
    writeFileSync(`${dest}.part`, data.subarray(0, CHUNK_BYTES + CHUNK_BYTES / 2));
    ranges.length = 0;
    const got = await fetchBundle({ url, ...sums }, dest);
    expect(got.resumedAt).toBe(CHUNK_BYTES);
    expect(ranges).toEqual([CHUNK_BYTES]);
    expect(got.fetched).toBe(SIZE - CHUNK_BYTES);
    expect(readFileSync(dest).equals(data)).toBe(true);
  });

  it('a chunk damaged on the way is fetched again; a part file damaged on disk is cut back', async () => {
    const sums = await chunkHashes(file);
    faults.push({ flipAt: CHUNK_BYTES + 7 });
    ranges.length = 0;
    const dest = join(work, 'c.bundle');
    await fetchBundle({ url, ...sums }, dest);
    expect(ranges).toEqual([0, CHUNK_BYTES]);
    expect(readFileSync(dest).equals(data)).toBe(true);
    const damaged = join(work, 'd.bundle');
    const part = Buffer.from(data.subarray(0, CHUNK_BYTES * 2));
    part.writeUInt8(part.readUInt8(CHUNK_BYTES + 3) ^ 1, CHUNK_BYTES + 3);
    writeFileSync(`${damaged}.part`, part);
    ranges.length = 0;
    expect((await fetchBundle({ url, ...sums }, damaged)).resumedAt).toBe(CHUNK_BYTES);
    expect(readFileSync(damaged).equals(data)).toBe(true);
  });

  it('gives up after its attempts, keeping what it verified for the next try', async () => {
    const sums = await chunkHashes(file);
    for (let i = 0; i < 2; i++) faults.push({ cutAfter: CHUNK_BYTES + 10 });
    const dest = join(work, 'e.bundle');
    await expect(fetchBundle({ url, ...sums }, dest, { attempts: 2 })).rejects.toThrow(/after 2 attempts; \d+ bytes kept/);
    // Whole verified chunks only (how much of a cut connection's data arrives is up to the kernel).
    const kept = readFileSync(`${dest}.part`);
    expect(kept.length % CHUNK_BYTES).toBe(0);
    expect(kept.length).toBeGreaterThanOrEqual(CHUNK_BYTES);
    expect(kept.equals(data.subarray(0, kept.length))).toBe(true);
  });
});
