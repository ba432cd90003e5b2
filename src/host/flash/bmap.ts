import { createHash } from 'node:crypto';
import { parseXml, XmlError, type XmlElement } from './xml.js';

/**
 * bmaptool's block map (format 1.3–2.0): which blocks of an image hold data, and a checksum of
 * each run of them. Pure: text in, a checked Bmap out.
 */
export interface BmapRange {
  /** First and last block, inclusive, as in the file (`a-b`). */
  first: number;
  last: number;
  /** Hex digest of the range's bytes (ChecksumType), when the file gives one. */
  checksum?: string;
}

export interface Bmap {
  version: string;
  imageSize: number;
  blockSize: number;
  blocksCount: number;
  mappedBlocksCount: number;
  checksumType?: 'sha256' | 'sha1';
  ranges: BmapRange[];
}

export class BmapError extends Error {}

export function parseBmap(text: string, where = 'bmap'): Bmap {
  let root: XmlElement;
  try {
    root = parseXml(text);
  } catch (error) {
    if (error instanceof XmlError) throw new BmapError(`${where}: not well-formed XML: ${error.message}`);
    throw error;
  }
  const fail = (message: string): never => {
    throw new BmapError(`${where}: ${message}`);
  };
  if (root.name !== 'bmap') fail(`the root element is <${root.name}>, not <bmap>`);
  const version = root.attributes.version ?? fail('<bmap> has no version');
  const major = /^(\d+)\.(\d+)$/.exec(version);
  if (!major || !['1', '2'].includes(major[1] as string)) fail(`unsupported bmap format version ${version} (1.x and 2.x are read)`);

  const only = (name: string, required = true): XmlElement | undefined => {
    const found = root.children.filter((c) => c.name === name);
    if (found.length > 1) fail(`<${name}> appears ${found.length} times`);
    if (!found[0] && required) fail(`<${name}> is missing`);
    return found[0];
  };
  const integer = (name: string): number => {
    const el = only(name) as XmlElement;
    const value = el.text.trim();
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) fail(`<${name}> is not a whole number: '${value}' (line ${el.line})`);
    return Number(value);
  };
  const imageSize = integer('ImageSize');
  const blockSize = integer('BlockSize');
  const blocksCount = integer('BlocksCount');
  const mappedBlocksCount = integer('MappedBlocksCount');
  if (blockSize <= 0) fail('<BlockSize> is 0');
  if (blocksCount !== Math.ceil(imageSize / blockSize)) fail(`<BlocksCount> ${blocksCount} does not match <ImageSize> ${imageSize} in blocks of ${blockSize}`);

  let checksumType: Bmap['checksumType'];
  const typeEl = only('ChecksumType', false);
  if (typeEl) {
    const t = typeEl.text.trim();
    if (t !== 'sha256' && t !== 'sha1') fail(`unsupported <ChecksumType> '${t}'`);
    checksumType = t as 'sha256' | 'sha1';
  } else if (major?.[1] === '1') {
    checksumType = 'sha1'; // format 1.3: a sha1 attribute per range
  }
  const digestLength = checksumType === 'sha256' ? 64 : 40;

  // The file's own checksum, computed with its value written as zeros (bmaptool's rule).
  const fileSum = only('BmapFileChecksum', false) ?? only('BmapFileSHA1', false);
  if (fileSum) {
    const value = fileSum.text.trim();
    if (!new RegExp(`^[0-9a-f]{${digestLength}}$`).test(value)) fail(`<${fileSum.name}> is not a ${checksumType} digest`);
    const zeroed = text.replace(value, '0'.repeat(value.length));
    const actual = createHash(checksumType ?? 'sha1').update(zeroed).digest('hex');
    if (actual !== value) fail(`the file is damaged or was edited: its checksum is ${actual}, it records ${value}`);
  }

  const map = only('BlockMap') as XmlElement;
  const ranges: BmapRange[] = [];
  let mapped = 0;
  for (const el of map.children) {
    if (el.name !== 'Range') fail(`unexpected <${el.name}> in <BlockMap> (line ${el.line})`);
    const m = /^(\d+)(?:-(\d+))?$/.exec(el.text.trim());
    if (!m) fail(`<Range> '${el.text.trim()}' is not 'a' or 'a-b' (line ${el.line})`);
    const first = Number(m?.[1]);
    const last = m?.[2] === undefined ? first : Number(m[2]);
    if (last < first) fail(`range ${first}-${last} runs backwards (line ${el.line})`);
    if (last >= blocksCount) fail(`range ${first}-${last} is past the image's ${blocksCount} blocks (line ${el.line})`);
    const previous = ranges[ranges.length - 1];
    if (previous && first <= previous.last) fail(`range ${first}-${last} overlaps or precedes ${previous.first}-${previous.last} (line ${el.line})`);
    const checksum = el.attributes.chksum ?? el.attributes.sha1;
    if (checksum !== undefined && !new RegExp(`^[0-9a-f]{${digestLength}}$`).test(checksum)) fail(`range ${first}-${last} has a malformed checksum (line ${el.line})`);
    if (checksum === undefined && checksumType) fail(`range ${first}-${last} has no checksum (line ${el.line})`);
    ranges.push(checksum === undefined ? { first, last } : { first, last, checksum });
    mapped += last - first + 1;
  }
  if (mapped !== mappedBlocksCount) fail(`the ranges hold ${mapped} blocks, <MappedBlocksCount> says ${mappedBlocksCount}`);
  return { version, imageSize, blockSize, blocksCount, mappedBlocksCount, checksumType, ranges };
}
