import { createRequire } from 'node:module';
import { join } from 'node:path';
import { getSystemErrorName } from 'node:util';
import { PiImageError } from '../errors.js';
import { PACKAGE_ROOT } from '../paths.js';

/**
 * The native block-device addon (native/, built by node-gyp at install time) behind a typed,
 * promise-based wrapper. Host-only: pi-node never imports src/host.
 *
 * Contract of a handle (see native/README.md):
 * - offsets given to write() and read() are multiples of `logicalSectorSize` (a RangeError
 *   otherwise); lengths are free. A write whose length is not a whole number of sectors is
 *   padded to the end of its last sector with the bytes already there (read first), so the
 *   bytes after the data are unchanged; a regular file still ends where the data ends.
 * - data goes through the handle's own buffer, aligned for O_DIRECT, `bufferSize` bytes at a
 *   time; the caller's Uint8Array must stay unchanged until write() settles.
 * - calls on one handle run one at a time in the order they were made, off the event loop.
 * - failures reject with a BlockDeviceError: `code` (EBUSY, EACCES, …), `syscall`, `path`.
 */

/** The addon's file, as node-gyp builds it. */
export const ADDON_PATH = join(PACKAGE_ROOT, 'native', 'build', 'Release', 'pi_image_block_device.node');

export interface OpenOptions {
  /** O_RDWR (default: read-only). */
  write?: boolean;
  /** O_EXCL: the kernel refuses (EBUSY) a block device that is mounted or opened exclusively. */
  exclusive?: boolean;
  /** O_DIRECT: no page cache; reads and writes go to the device. */
  direct?: boolean;
  /** Bytes of the aligned transfer buffer (default 4 MiB), rounded up to whole sectors. */
  bufferSize?: number;
}

export interface NativeBlockDevice {
  readonly path: string;
  /** false for a regular file. */
  readonly isBlockDevice: boolean;
  readonly direct: boolean;
  readonly writable: boolean;
  /** BLKSSZGET (512 for a regular file): offsets must be multiples of it. */
  readonly logicalSectorSize: number;
  /** BLKPBSZGET (512 for a regular file). */
  readonly physicalSectorSize: number;
  /** Bytes moved per system call. */
  readonly bufferSize: number;
  /** BLKGETSIZE64, or a regular file's current size. */
  size(): Promise<number>;
  /** `length` bytes at `offset`; fewer only at the end of the device or file. */
  read(offset: number, length: number): Promise<Buffer>;
  /** All of `data` at `offset`; a write past the end of a block device fails with ENOSPC before writing. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** fsync, then BLKFLSBUF on a block device (later reads come from the medium; skipped without CAP_SYS_ADMIN). */
  flush(): Promise<void>;
  /** BLKRRPART: the kernel rereads the partition table (nothing to do for a regular file). */
  rereadPartitions(): Promise<void>;
  /** Closes the descriptor; a second close does nothing, any other call afterwards fails with EBADF. */
  close(): Promise<void>;
}

/** What the compiled addon exports (native/src/block_device.cc). */
interface Addon {
  open(path: string, options: OpenOptions): Promise<RawHandle>;
}
/** The addon's handle: the same surface, except that write() resolves to the bytes written. */
type RawHandle = Omit<NativeBlockDevice, 'write'> & { write(offset: number, data: Uint8Array): Promise<number> };

/** The addon is not built (or cannot load here): says why and how to build it. */
export class NativeAddonMissingError extends PiImageError {
  constructor(readonly reason: string) {
    super(
      `the native block-device addon is not available: ${reason}`,
      'Writing to a disk or card needs it; writing to an image file and everything else in pi-image works without it. ' +
        `It is built when pi-image is installed; to build it again, install g++, make and python3 (scripts/setup-host does) ` +
        `and run \`npm run build:native\` in ${PACKAGE_ROOT} (node-gyp, which comes with npm, also needs Node.js's headers: ` +
        'it downloads them unless npm config nodedir points at them, e.g. /usr for NodeSource or Debian\'s libnode-dev).',
    );
  }
}

/** A system call on a device failed. */
export class BlockDeviceError extends PiImageError {
  constructor(
    message: string,
    hint: string | undefined,
    readonly code: string,
    readonly errno: number,
    readonly syscall: string,
    readonly path: string,
  ) {
    super(message, hint);
  }
}

const HINTS: Record<string, string> = {
  EBUSY: 'The device is in use: unmount its partitions (lsblk shows where they are mounted) and close what holds it open.',
  EACCES: 'Writing to a disk needs root (or membership of the disk group).',
  EPERM: 'Writing to a disk needs root (or membership of the disk group).',
  ENOENT: 'No such device: lsblk lists the disks.',
  EROFS: 'The device is read-only: an SD card adapter\'s lock switch?',
  ENOSPC: 'The image is larger than the device.',
  ENOMEDIUM: 'No medium in the reader.',
  EIO: 'The device reported an I/O error: the card or reader may be failing.',
};

function toBlockDeviceError(error: unknown): unknown {
  if (!(error instanceof Error) || typeof (error as { errno?: unknown }).errno !== 'number') return error;
  const raw = error as Error & { errno: number; code?: string; syscall?: string; path?: string };
  let code = raw.code;
  if (!code) {
    try {
      code = getSystemErrorName(raw.errno);
    } catch {
      code = `E${-raw.errno}`;
    }
  }
  const message = raw.message.startsWith(`${code}:`) ? raw.message : `${code}: ${raw.message}`;
  return new BlockDeviceError(message, HINTS[code], code, raw.errno, raw.syscall ?? '', raw.path ?? '');
}

async function call<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (error) {
    throw toBlockDeviceError(error);
  }
}

/** Loads the addon from `file`; never throws. */
export function loadBlockDeviceAddon(file: string = ADDON_PATH): { addon: Addon; error?: undefined } | { addon?: undefined; error: NativeAddonMissingError } {
  if (process.platform !== 'linux') return { error: new NativeAddonMissingError(`it is Linux-only (this is ${process.platform})`) };
  try {
    return { addon: createRequire(import.meta.url)(file) as Addon };
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    const reason = e.code === 'MODULE_NOT_FOUND' ? `${file} does not exist (the build at install time failed or was skipped)` : `${file} does not load: ${e.message}`;
    return { error: new NativeAddonMissingError(reason) };
  }
}

const loaded = loadBlockDeviceAddon();
/** Whether the addon loaded; when false, nativeLoadError says why and how to build it. */
export const nativeAvailable: boolean = loaded.addon !== undefined;
export const nativeLoadError: NativeAddonMissingError | undefined = loaded.error;

class Handle implements NativeBlockDevice {
  /** The last call queued: each call starts when the one before has settled. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly raw: RawHandle) {}

  get path(): string {
    return this.raw.path;
  }
  get isBlockDevice(): boolean {
    return this.raw.isBlockDevice;
  }
  get direct(): boolean {
    return this.raw.direct;
  }
  get writable(): boolean {
    return this.raw.writable;
  }
  get logicalSectorSize(): number {
    return this.raw.logicalSectorSize;
  }
  get physicalSectorSize(): number {
    return this.raw.physicalSectorSize;
  }
  get bufferSize(): number {
    return this.raw.bufferSize;
  }

  private queue<T>(op: () => Promise<T>): Promise<T> {
    const result = this.tail.then(() => call(op));
    this.tail = result.catch(() => {});
    return result;
  }

  size(): Promise<number> {
    return this.queue(() => this.raw.size());
  }
  read(offset: number, length: number): Promise<Buffer> {
    return this.queue(() => this.raw.read(offset, length));
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.queue(async () => {
      await this.raw.write(offset, data);
    });
  }
  flush(): Promise<void> {
    return this.queue(() => this.raw.flush());
  }
  rereadPartitions(): Promise<void> {
    return this.queue(() => this.raw.rereadPartitions());
  }
  close(): Promise<void> {
    return this.queue(() => this.raw.close());
  }
}

/**
 * Opens a block device (or a regular file) with the addon: O_CLOEXEC always, O_RDWR, O_EXCL and
 * O_DIRECT as asked. Rejects with NativeAddonMissingError when the addon is not built, with a
 * BlockDeviceError when the kernel refuses (EBUSY: mounted or in use).
 */
export async function openNativeBlockDevice(path: string, options: OpenOptions = {}): Promise<NativeBlockDevice> {
  if (!loaded.addon) throw loaded.error;
  const addon = loaded.addon;
  return new Handle(await call(() => addon.open(path, options)));
}
