import { createHash, type Hash } from 'node:crypto';
import { existsSync, promises as fs, realpathSync } from 'node:fs';
import { InterruptedError, PiImageError } from '../errors.js';
import { formatSeconds, type Reporter } from '../progress.js';
import { runTool } from '../tools/run.js';
import { BmapError, parseBmap, type Bmap } from './bmap.js';
import { FlashRefusedError, HalfWrittenError, ImageMismatchError } from './errors.js';
import { bmapByteRanges, describeRange, totalBytes, wholeImageRanges, type ByteRange } from './ranges.js';
import { FileSource, ZstdSource, zstdContentSize, type ImageSource } from './source.js';
import { blockDevno, deviceInfo, formatBytes, refusals, REAL_SYSTEM, type DeviceInfo, type SystemPaths } from './safety.js';
import { FileTarget, openBlockDevice, readFully, type FlashTarget } from './target.js';
import { verifyRanges } from './verify.js';
import { writeCardFiles } from './card-files.js';
import type { CardIdentity } from '../../shared/card-identity.js';

/**
 * `pi-image flash`: source (image file or zstd stream) → target (file or block device), then
 * the read-back. Only the bmap's ranges are written and checked; without a bmap, the whole image.
 */
export interface FlashOptions {
  image: string;
  target: string;
  /** A bmap path; undefined: `<image without .zst/.img>.bmap` beside it if present; false: none (every byte). */
  bmap?: string | false;
  verify?: boolean;
  /** Write nothing: read the target back and check it against the image (a card flashed earlier). */
  verifyOnly?: boolean;
  /** Write a device that is not removable. Never a mounted one nor the running system's. */
  force?: boolean;
  /** Asked before a block device is written; resolves true to go on. Absent: refused. */
  confirm?: (device: DeviceInfo) => Promise<boolean>;
  /** This card's node identity (`--node`): written into its boot partition once it is verified. */
  identity?: CardIdentity;
  reporter: Reporter;
  signal?: AbortSignal;
  system?: SystemPaths;
  rootPath?: string;
}

export interface FlashResult {
  image: string;
  target: string;
  targetKind: 'file' | 'block';
  bmap: string | null;
  imageSize: number;
  bytesWritten: number;
  verified: boolean;
  verifyOnly: boolean;
  writeSeconds: number;
  verifySeconds: number;
  /** The identity files written into the card's boot partition. */
  identityFiles?: string[];
}

/** The bmap that goes with an image: `x.img.zst` and `x.img` → `x.bmap` (as the build names it), else `x.img.bmap`. */
export function bmapBeside(image: string): string | undefined {
  const base = image.replace(/\.zst$/, '');
  // An image named without .img would be its own first candidate.
  for (const candidate of [base.replace(/\.img$/, '.bmap'), `${base}.bmap`]) if (candidate !== base && existsSync(candidate)) return candidate;
  return undefined;
}

/** Throttled stage-progress with bytes, speed and ETA. */
class ByteProgress {
  private done = 0;
  private last = 0;
  private readonly started = Date.now();
  constructor(
    private readonly reporter: Reporter,
    private readonly stage: string,
    private readonly total: number,
    private readonly verb: string,
  ) {}
  add(n: number): void {
    this.done += n;
    const now = Date.now();
    if (now - this.last < 250 && this.done < this.total) return;
    this.last = now;
    const seconds = Math.max(0.001, (now - this.started) / 1000);
    const rate = this.done / seconds;
    const eta = rate > 0 ? (this.total - this.done) / rate : 0;
    this.reporter.emit({
      type: 'stage-progress',
      stage: this.stage,
      fraction: this.total ? Math.min(1, this.done / this.total) : 1,
      detail: `${this.verb} ${formatBytes(this.done)} of ${formatBytes(this.total)}, ${formatBytes(rate)}/s, ETA ${formatSeconds(eta)}`,
    });
  }
  get seconds(): number {
    return (Date.now() - this.started) / 1000;
  }
}

export async function flash(opts: FlashOptions): Promise<FlashResult> {
  const { reporter, signal } = opts;
  const system = opts.system ?? REAL_SYSTEM;
  if (!existsSync(opts.image)) throw new FlashRefusedError(`${opts.image} does not exist`);
  const compressed = opts.image.endsWith('.zst');

  // The bmap and the ranges to write.
  const bmapPath = opts.bmap === false ? undefined : (opts.bmap ?? bmapBeside(opts.image));
  let bmap: Bmap | undefined;
  if (bmapPath) {
    try {
      bmap = parseBmap(await fs.readFile(bmapPath, 'utf8'), bmapPath);
    } catch (error) {
      if (error instanceof BmapError) throw new PiImageError(error.message, 'give the bmap made with this image (--bmap FILE), or --no-bmap to write every byte');
      throw error;
    }
  }
  let imageSize: number;
  if (bmap) imageSize = bmap.imageSize;
  else if (compressed) {
    const size = await zstdContentSize(opts.image);
    if (size === undefined) throw new PiImageError(`${opts.image} does not record its decompressed size`, 'give its bmap (--bmap FILE) or decompress it first');
    imageSize = size;
  } else imageSize = (await fs.stat(opts.image)).size;
  if (bmap && !compressed) {
    const actual = (await fs.stat(opts.image)).size;
    if (actual !== bmap.imageSize) throw new ImageMismatchError(`${opts.image} is ${actual} bytes, its bmap ${bmapPath} describes ${bmap.imageSize}`, 'give the bmap made with this image (--bmap FILE)');
  }
  const ranges: ByteRange[] = bmap ? bmapByteRanges(bmap) : wholeImageRanges(imageSize);
  const algorithm = bmap?.checksumType ?? 'sha256';
  const total = totalBytes(ranges);
  if (!bmap) reporter.emit({ type: 'warning', message: `no bmap${opts.bmap === false ? '' : ` beside ${opts.image}`}: writing every byte of the image (${formatBytes(imageSize)})` });
  else if (!bmap.checksumType) reporter.emit({ type: 'warning', message: `${bmapPath} has no checksums: the read-back is checked against the image as it was read` });

  const source: ImageSource = compressed ? new ZstdSource(opts.image) : new FileSource(opts.image);
  if (opts.verifyOnly) return verifyOnly(opts, source, bmapPath ?? null, ranges, algorithm, imageSize);

  // The target, and whether it may be written.
  const devno = blockDevno(opts.target);
  let target: FlashTarget;
  if (devno) {
    const info = deviceInfo(opts.target, system);
    const refused = refusals(info, system, opts.rootPath ?? '/');
    const blocking = refused.filter((r) => !r.overridableByForce || !opts.force);
    if (blocking.length) {
      const onlyForceable = blocking.every((r) => r.overridableByForce);
      throw new FlashRefusedError(
        `refusing to write ${info.path}: ${blocking.map((r) => r.reason).join('; ')}`,
        onlyForceable ? 'if this really is the disk to overwrite, add --force' : 'pick another device (pi-image flash --list shows them); --force does not override this',
      );
    }
    if (info.size < imageSize) throw new FlashRefusedError(`${info.path} (${formatBytes(info.size)}) is smaller than the image (${formatBytes(imageSize)})`);
    if (!opts.confirm) throw new FlashRefusedError(`not writing ${info.path} (${info.model}, ${formatBytes(info.size)}): not confirmed, and there is no terminal to ask on`, 'add --yes to write it without asking');
    if (!(await opts.confirm(info))) throw new FlashRefusedError(`not writing ${info.path}: not confirmed`);
    target = openBlockDevice(opts.target, info.sysDir, reporter);
  } else {
    if (existsSync(opts.target)) {
      const st = await fs.stat(opts.target);
      if (!st.isFile()) throw new FlashRefusedError(`${opts.target} is neither a block device nor a regular file`);
      if (realpathSync(opts.target) === realpathSync(opts.image)) throw new FlashRefusedError(`${opts.target} is the image itself`);
    }
    target = new FileTarget(opts.target);
  }

  const halfWritten = (error: unknown): Error => {
    const e = signal?.aborted ? (signal.reason as Error) : error instanceof Error ? error : new Error(String(error));
    if (target.kind === 'file') return e;
    const what = e instanceof InterruptedError ? 'interrupted' : e.message;
    return new HalfWrittenError(`${opts.target} is half-written and will not boot: ${what}`, 'flash it again before using it');
  };

  // Write.
  let started = false;
  const expected: string[] = [];
  const write = new ByteProgress(reporter, 'write', total, 'wrote');
  let verifySeconds = 0;
  let identityFiles: string[] | undefined;
  const writeIdentity = async (path: string, block: boolean) => {
    const identity = opts.identity as CardIdentity;
    reporter.emit({ type: 'stage-start', stage: 'identity', title: `node identity${identity.hostname ? ` ${identity.hostname}` : ''}${identity.role ? `, ${identity.role}` : ''}${identity.network ? `, ${identity.network.address}` : ''} → boot partition` });
    const started = Date.now();
    const files = await writeCardFiles(path, identity, { block, reporter });
    reporter.emit({ type: 'stage-end', stage: 'identity', cached: false, seconds: (Date.now() - started) / 1000 });
    return files;
  };
  try {
    signal?.throwIfAborted();
    await target.prepare(imageSize);
    started = true;
    reporter.emit({ type: 'stage-start', stage: 'write', title: `${opts.image} → ${opts.target} (${formatBytes(total)}${bmap ? ` mapped of ${formatBytes(imageSize)}` : ''})` });
    let hash: Hash | undefined;
    let hashed = 0;
    let current = -1;
    const finishRange = () => {
      if (current < 0 || !hash) return;
      const range = ranges[current] as ByteRange;
      if (hashed !== range.length) throw new ImageMismatchError(`${opts.image}: ${describeRange(range)} read ${hashed} of ${range.length} bytes`);
      const digest = hash.digest('hex');
      if (range.checksum && digest !== range.checksum) {
        throw new ImageMismatchError(`${opts.image} does not match its bmap in ${describeRange(range)}: the image is damaged or the bmap is another image's`, 'rebuild or download the image again, or give its own bmap (--bmap FILE)');
      }
      expected[current] = digest;
    };
    for await (const chunk of source.chunks(ranges, signal)) {
      if (chunk.rangeIndex !== current) {
        finishRange();
        current = chunk.rangeIndex;
        hash = createHash(algorithm);
        hashed = 0;
      }
      hash?.update(chunk.data);
      hashed += chunk.data.length;
      await target.write(chunk.offset, chunk.data);
      write.add(chunk.data.length);
    }
    finishRange();
    if (expected.length !== ranges.length || expected.some((e) => !e)) throw new ImageMismatchError(`${opts.image} ended before every mapped range was read`);
    await target.flush();
    reporter.emit({ type: 'stage-end', stage: 'write', cached: false, seconds: write.seconds });

    // Verify.
    if (opts.verify !== false) {
      reporter.emit({ type: 'stage-start', stage: 'verify', title: `reading back ${formatBytes(total)} from ${opts.target}` });
      const progress = new ByteProgress(reporter, 'verify', total, 'checked');
      await verifyRanges({ ranges, expected, algorithm, read: (o, l) => target.read(o, l), target: opts.target, onBytes: (n) => progress.add(n), signal });
      verifySeconds = progress.seconds;
      reporter.emit({ type: 'stage-end', stage: 'verify', cached: false, seconds: verifySeconds });
    }
    // The identity edits the boot partition after the check: the image's blocks were verified as written.
    if (opts.identity && target instanceof FileTarget) identityFiles = await writeIdentity(target.partialPath, false);
    await target.commit();
    if (opts.identity && target.kind === 'block') identityFiles = await writeIdentity(opts.target, true);
  } catch (error) {
    await target.abort();
    throw started ? halfWritten(error) : signal?.aborted ? signal.reason : error;
  }
  return {
    image: opts.image,
    target: opts.target,
    targetKind: target.kind,
    bmap: bmapPath ?? null,
    imageSize,
    bytesWritten: total,
    verified: opts.verify !== false,
    verifyOnly: false,
    writeSeconds: write.seconds,
    verifySeconds,
    ...(identityFiles ? { identityFiles } : {}),
  };
}

/** The digest of every range as the image holds it: the bmap's, else read from the source. */
async function expectedDigests(source: ImageSource, ranges: readonly ByteRange[], algorithm: string, signal?: AbortSignal): Promise<string[]> {
  if (ranges.every((r) => r.checksum)) return ranges.map((r) => r.checksum as string);
  const hashes = ranges.map(() => createHash(algorithm));
  for await (const chunk of source.chunks(ranges, signal)) hashes[chunk.rangeIndex]?.update(chunk.data);
  return hashes.map((h, i) => ranges[i]?.checksum ?? h.digest('hex'));
}

async function verifyOnly(opts: FlashOptions, source: ImageSource, bmap: string | null, ranges: ByteRange[], algorithm: string, imageSize: number): Promise<FlashResult> {
  const { reporter, signal } = opts;
  const isBlock = blockDevno(opts.target) !== undefined;
  if (!isBlock && !existsSync(opts.target)) throw new FlashRefusedError(`${opts.target} does not exist`);
  const expected = await expectedDigests(source, ranges, algorithm, signal);
  if (isBlock) await runTool('blockdev', ['--flushbufs', opts.target], { stage: 'verify', reporter });
  const handle = await fs.open(opts.target, 'r');
  try {
    const total = totalBytes(ranges);
    reporter.emit({ type: 'stage-start', stage: 'verify', title: `reading back ${formatBytes(total)} from ${opts.target}` });
    const progress = new ByteProgress(reporter, 'verify', total, 'checked');
    const read = (offset: number, length: number) => readFully(handle, offset, length);
    await verifyRanges({ ranges, expected, algorithm, read, target: opts.target, onBytes: (n) => progress.add(n), signal });
    reporter.emit({ type: 'stage-end', stage: 'verify', cached: false, seconds: progress.seconds });
    return { image: opts.image, target: opts.target, targetKind: isBlock ? 'block' : 'file', bmap, imageSize, bytesWritten: 0, verified: true, verifyOnly: true, writeSeconds: 0, verifySeconds: progress.seconds };
  } finally {
    await handle.close();
  }
}
