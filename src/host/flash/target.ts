import { constants, promises as fs } from 'node:fs';
import { basename } from 'node:path';
import type { Reporter } from '../progress.js';
import { runTool } from '../tools/run.js';
import { nativeAvailable, openNativeBlockDevice, type NativeBlockDevice } from '../native/block-device.js';

/**
 * Where an image is written. One interface for a regular file and a block device; the flash
 * pipeline knows nothing else about the target.
 *
 * Block devices go through the native addon (native/) when it is built: O_DIRECT writes from
 * sector-aligned buffers, size from BLKGETSIZE64, O_EXCL open, BLKRRPART. Without it,
 * FsBlockDevice below does the same with Node's fs (O_EXCL open, page-cache writes, fsync) and
 * util-linux's blockdev for what needs an ioctl (--flushbufs before the read-back so it
 * reads the medium, --rereadpt after).
 */
export interface BlockDevice {
  /** Bytes the target can hold (a file: unlimited, reported as Infinity). */
  size(): Promise<number>;
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Reads `length` bytes at `offset` (fewer only at the end). */
  read(offset: number, length: number): Promise<Buffer>;
  /** Everything written reaches the medium; later reads come from it, not from a cache. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** A target the pipeline writes: a BlockDevice that is also told how the write ended. */
export interface FlashTarget extends BlockDevice {
  readonly kind: 'file' | 'block';
  /** The path the user gave. */
  readonly path: string;
  /** Called once before writing, with the image's size. */
  prepare(imageSize: number): Promise<void>;
  /** The image is written and verified: make it the target (a file: rename into place). */
  commit(): Promise<void>;
  /** Writing failed or was interrupted: clean up what can be (a file: remove the partial one). */
  abort(): Promise<void>;
}

/** `length` bytes at `offset`, fewer only at the end of the file or device. */
export async function readFully(handle: fs.FileHandle, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? buffer : buffer.subarray(0, done);
}

async function writeFully(handle: fs.FileHandle, offset: number, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done);
    done += bytesWritten;
  }
}

/** What a target opened through Node's fs shares: its handle, whole reads and writes, close. */
abstract class HandleTarget {
  protected handle: fs.FileHandle | undefined;

  protected get fh(): fs.FileHandle {
    if (!this.handle) throw new Error('target not open');
    return this.handle;
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    return writeFully(this.fh, offset, data);
  }
  read(offset: number, length: number): Promise<Buffer> {
    return readFully(this.fh, offset, length);
  }
  async close(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
  }
}

/**
 * A regular file: written as `<path>.partial` (0600: images carry the cluster secret), sized to
 * the image with ftruncate so that unmapped ranges stay holes, renamed to `<path>` on success.
 */
export class FileTarget extends HandleTarget implements FlashTarget {
  readonly kind = 'file';
  readonly partialPath: string;

  constructor(readonly path: string) {
    super();
    this.partialPath = `${path}.partial`;
  }
  async prepare(imageSize: number): Promise<void> {
    this.handle = await fs.open(this.partialPath, 'w+', 0o600);
    await this.handle.truncate(imageSize);
  }
  async size(): Promise<number> {
    return Infinity;
  }
  async flush(): Promise<void> {
    await this.fh.sync();
  }
  async commit(): Promise<void> {
    await this.close();
    await fs.rename(this.partialPath, this.path);
  }
  async abort(): Promise<void> {
    await this.close().catch(() => {});
    await fs.rm(this.partialPath, { force: true });
  }
}

/** A block device through Node's fs: opened O_RDWR|O_EXCL (the kernel refuses a device in use). */
export class FsBlockDevice extends HandleTarget implements FlashTarget {
  readonly kind = 'block';

  constructor(
    readonly path: string,
    private readonly sysDir: string,
    private readonly reporter: Reporter,
  ) {
    super();
  }
  async prepare(): Promise<void> {
    this.handle = await fs.open(this.path, constants.O_RDWR | constants.O_EXCL);
  }
  async size(): Promise<number> {
    return Number((await fs.readFile(`${this.sysDir}/size`, 'utf8')).trim()) * 512;
  }
  async flush(): Promise<void> {
    await this.fh.sync();
    // Drop the device's page cache so that the read-back comes from the card, not from memory.
    await runTool('blockdev', ['--flushbufs', this.path], { stage: 'verify', reporter: this.reporter });
  }
  async commit(): Promise<void> {
    await this.close();
    // Let the kernel see the new partition table (refused by loop devices without partition scanning).
    await runTool('blockdev', ['--rereadpt', this.path], { stage: 'write', reporter: this.reporter }).catch(() => {
      if (!basename(this.path).startsWith('loop')) this.reporter.emit({ type: 'warning', message: `the kernel did not reread ${this.path}'s partition table: unplug and replug it before mounting` });
    });
  }
  async abort(): Promise<void> {
    await this.handle?.sync().catch(() => {});
    await this.close().catch(() => {});
  }
}

/**
 * A block device through the native addon: O_EXCL open, O_DIRECT writes from sector-aligned
 * buffers (no page cache between the image and the card, so the read-back reads the card),
 * size from BLKGETSIZE64, flush with fsync + BLKFLSBUF, BLKRRPART once written.
 */
class NativeBlockTarget implements FlashTarget {
  readonly kind = 'block';
  private device: NativeBlockDevice | undefined;

  constructor(
    readonly path: string,
    private readonly reporter: Reporter,
  ) {}
  private get dev(): NativeBlockDevice {
    if (!this.device) throw new Error('device not open');
    return this.device;
  }
  async prepare(): Promise<void> {
    this.device = await openNativeBlockDevice(this.path, { write: true, exclusive: true, direct: true });
  }
  size(): Promise<number> {
    return this.dev.size();
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.dev.write(offset, data);
  }
  read(offset: number, length: number): Promise<Buffer> {
    return this.dev.read(offset, length);
  }
  flush(): Promise<void> {
    return this.dev.flush();
  }
  async close(): Promise<void> {
    await this.device?.close();
    this.device = undefined;
  }
  async commit(): Promise<void> {
    // Let the kernel see the new partition table (loop devices without partition scanning refuse: EINVAL).
    await this.dev.rereadPartitions().catch(() => {
      if (!basename(this.path).startsWith('loop')) this.reporter.emit({ type: 'warning', message: `the kernel did not reread ${this.path}'s partition table: unplug and replug it before mounting` });
    });
    await this.close();
  }
  async abort(): Promise<void> {
    await this.device?.flush().catch(() => {});
    await this.close().catch(() => {});
  }
}

/** The one place a block device is opened: the native addon when it is built, else Node's fs and blockdev. */
export function openBlockDevice(path: string, sysDir: string, reporter: Reporter): FlashTarget {
  return nativeAvailable ? new NativeBlockTarget(path, reporter) : new FsBlockDevice(path, sysDir, reporter);
}
