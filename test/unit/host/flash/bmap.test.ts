import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BmapError, parseBmap } from '../../../../src/host/flash/bmap.js';
import { parseXml } from '../../../../src/host/flash/xml.js';
import { createHash } from 'node:crypto';

const work = mkdtempSync(join(tmpdir(), 'bmap-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** An 8 MiB sparse file with data in block 10 and blocks 100-102 (4 KiB blocks), and its bmap by bmaptool. */
function makeImage(): { image: string; bmap: string; block10: Buffer; blocks100: Buffer } {
  const image = join(work, 'sparse.img');
  const fd = openSync(image, 'w');
  ftruncateSync(fd, 8 << 20);
  const block10 = Buffer.alloc(4096, 0);
  block10.write('hello');
  const blocks100 = Buffer.alloc(3 * 4096);
  for (let i = 0; i < blocks100.length; i++) blocks100[i] = (i * 7 + 3) & 0xff;
  writeSync(fd, block10, 0, block10.length, 10 * 4096);
  writeSync(fd, blocks100, 0, blocks100.length, 100 * 4096);
  closeSync(fd);
  const bmap = join(work, 'sparse.bmap');
  execFileSync('bmaptool', ['create', '-o', bmap, image], { stdio: 'ignore' });
  return { image, bmap, block10, blocks100 };
}

describe('parseBmap', () => {
  const made = makeImage();
  const text = readFileSync(made.bmap, 'utf8');

  it("reads bmaptool's own output: sizes, counts and per-range sha256", () => {
    const bmap = parseBmap(text);
    expect(bmap.version).toBe('2.0');
    expect(bmap.imageSize).toBe(8 << 20);
    expect(bmap.blockSize).toBe(4096);
    expect(bmap.blocksCount).toBe(2048);
    expect(bmap.mappedBlocksCount).toBe(4);
    expect(bmap.checksumType).toBe('sha256');
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect(bmap.ranges).toEqual([
      { first: 10, last: 10, checksum: sha(made.block10) },
      { first: 100, last: 102, checksum: sha(made.blocks100) },
    ]);
  });

  it('refuses a bmap whose own checksum does not match (an edited range)', () => {
    const edited = text.replace(/>\s*100-102\s*</, '> 100-101 <');
    expect(() => parseBmap(edited)).toThrow(/damaged or was edited/);
  });

  const noFileSum = (t: string) => t.replace(/<BmapFileChecksum>[^<]*<\/BmapFileChecksum>/, '');
  it('checks counts, order and bounds of ranges', () => {
    expect(() => parseBmap(noFileSum(text).replace('<MappedBlocksCount> 4', '<MappedBlocksCount> 5'))).toThrow(/hold 4 blocks/);
    expect(() => parseBmap(noFileSum(text).replace(/>\s*100-102\s*</, '> 5000-5002 <'))).toThrow(/past the image's 2048 blocks/);
    expect(() => parseBmap(noFileSum(text).replace(/>\s*100-102\s*</, '> 102-100 <'))).toThrow(/backwards/);
    expect(() => parseBmap(noFileSum(text).replace(/>\s*100-102\s*</, '> 8-10 <'))).toThrow(/overlaps/);
    expect(() => parseBmap(noFileSum(text).replace('<BlocksCount> 2048', '<BlocksCount> 2049'))).toThrow(/BlocksCount/);
    expect(() => parseBmap(noFileSum(text).replace('version="2.0"', 'version="3.0"'))).toThrow(/unsupported bmap format version 3.0/);
    expect(() => parseBmap(noFileSum(text).replace(/chksum="[0-9a-f]+"/, 'chksum="xyz"'))).toThrow(/malformed checksum/);
  });

  it('refuses what is not well-formed, naming the line', () => {
    expect(() => parseBmap(text.replace('</BlockMap>', ''))).toThrow(BmapError);
    expect(() => parseBmap(text.replace('</BlockMap>', '</Blockmap>'))).toThrow(/line \d+: <\/Blockmap> does not close <BlockMap>/);
    expect(() => parseBmap(`<!DOCTYPE x [<!ENTITY a "b">]>${text}`)).toThrow(/not accepted/);
    expect(() => parseBmap(text + '<bmap/>')).toThrow(/after the root/);
  });
});

describe('parseXml', () => {
  it('decodes entities and attributes, keeps comments out', () => {
    const root = parseXml(`<?xml version="1.0"?>\n<!-- c --><a x='1' y="&lt;&amp;&#65;&#x42;"><!-- d --><b>t&gt;</b>u</a>\n`);
    expect(root.attributes).toEqual({ x: '1', y: '<&AB' });
    expect(root.children[0]).toMatchObject({ name: 'b', text: 't>' });
    expect(root.text).toBe('u');
  });
  it('is strict', () => {
    for (const bad of ['<a x=1/>', '<a x="1" x="2"/>', '<a>&foo;</a>', '<a>& b</a>', '<a><![CDATA[x]]></a>', '<a><b></a></b>', 'text<a/>', '<a/><b/>', '<a><!-- x -- y --></a>', '<a', '']) {
      expect(() => parseXml(bad), bad).toThrow();
    }
  });
});
