import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BlockDeviceError,
  loadBlockDeviceAddon,
  NativeAddonMissingError,
  nativeAvailable,
  nativeLoadError,
  openNativeBlockDevice,
  type NativeBlockDevice,
} from '../../../../src/host/native/block-device.js';

/**
 * The native block-device addon against a regular file and real loop devices (root). A missing
 * addon fails every test here with its reason (openNativeBlockDevice rejects with it): the
 * addon is part of the product, not an optional extra of the test run.
 */
const MIB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'pi-image-native-'));
const opened: NativeBlockDevice[] = [];

async function open(path: string, options: Parameters<typeof openNativeBlockDevice>[1]): Promise<NativeBlockDevice> {
  const device = await openNativeBlockDevice(path, options);
  opened.push(device);
  return device;
}

async function rejection(promise: Promise<unknown>): Promise<BlockDeviceError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BlockDeviceError);
  return error as BlockDeviceError;
}

afterAll(async () => {
  for (const device of opened) await device.close().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

describe('the addon', () => {
  it('is built and loads', () => {
    expect(nativeLoadError?.message, `${nativeLoadError?.message}\n${nativeLoadError?.hint}`).toBeUndefined();
    expect(nativeAvailable).toBe(true);
  });

  it('when missing, says so and how to build it', () => {
    const { error } = loadBlockDeviceAddon(join(dir, 'missing.node'));
    expect(error).toBeInstanceOf(NativeAddonMissingError);
    expect(error?.message).toContain('missing.node does not exist');
    expect(error?.hint).toContain('npm run build:native');
    expect(error?.hint).toContain('g++, make and python3');
    expect(error?.hint).toContain('writing to an image file');
  });
});

describe('on a regular file', () => {
  const file = join(dir, 'disk.bin');
  let original: Buffer;

  beforeAll(() => {
    original = randomBytes(64 * 1024 + 300);
    writeFileSync(file, original);
  });

  it('has its size and 512-byte sectors', async () => {
    const device = await open(file, { write: true, exclusive: true, direct: true });
    expect(device.isBlockDevice).toBe(false);
    expect(await device.size()).toBe(original.length);
    expect(device.logicalSectorSize).toBe(512);
    expect(device.physicalSectorSize).toBe(512);
    expect(device.direct).toBe(true);
    expect(device.writable).toBe(true);
    await device.close();
  });

  it('writes and reads back aligned data with O_DIRECT, across several fills of its buffer', async () => {
    const device = await open(file, { write: true, direct: true, bufferSize: 4096 });
    expect(device.bufferSize).toBe(4096);
    const data = randomBytes(5 * 4096);
    await device.write(2048, data);
    expect((await device.read(2048, data.length)).equals(data)).toBe(true);
    await device.flush();
    await device.close();
    const expected = Buffer.from(original);
    data.copy(expected, 2048);
    expect(readFileSync(file).equals(expected)).toBe(true);
    original = expected;
  });

  it('pads an unaligned final chunk with the bytes already there', async () => {
    const device = await open(file, { write: true, direct: true, bufferSize: 1024 });
    const data = randomBytes(2 * 1024 + 700); // two full buffers, then 700 bytes: 1 sector + 188
    await device.write(8192, data);
    await device.close();
    const expected = Buffer.from(original);
    data.copy(expected, 8192);
    const now = readFileSync(file);
    expect(now.length).toBe(original.length);
    expect(now.subarray(8192 + data.length, 8192 + 4096).equals(original.subarray(8192 + data.length, 8192 + 4096))).toBe(true);
    expect(now.equals(expected)).toBe(true);
    original = expected;
  });

  it('grows a file to the end of the data, not to the end of its last sector', async () => {
    const growing = join(dir, 'growing.bin');
    writeFileSync(growing, Buffer.alloc(1024, 0xaa));
    const device = await open(growing, { write: true, direct: true });
    const data = randomBytes(700);
    await device.write(1024, data);
    expect(await device.size()).toBe(1724);
    await device.write(0, Buffer.alloc(10, 0x55)); // shorter than a sector, inside the file
    await device.close();
    expect(readFileSync(growing).equals(Buffer.concat([Buffer.alloc(10, 0x55), Buffer.alloc(1014, 0xaa), data]))).toBe(true);
  });

  it('reads fewer bytes only at the end, also from an unaligned end with O_DIRECT', async () => {
    const device = await open(file, { direct: true, bufferSize: 4096 });
    const all = await device.read(0, original.length + 5000);
    expect(all.length).toBe(original.length);
    expect(all.equals(original)).toBe(true);
    expect((await device.read(original.length + 512 - (original.length % 512), 512)).length).toBe(0);
    await device.close();
  });

  it('runs the calls on one handle in the order they were made', async () => {
    const device = await open(file, { write: true, direct: true, bufferSize: 512 });
    const first = randomBytes(8192);
    const second = randomBytes(512);
    const writes = [device.write(0, first), device.write(4096, second)];
    const read = device.read(0, 8192);
    const closed = device.close();
    await Promise.all(writes);
    const expected = Buffer.from(first);
    second.copy(expected, 4096);
    expect((await read).equals(expected)).toBe(true);
    await closed;
    original = readFileSync(file);
    expect(original.subarray(0, 8192).equals(expected)).toBe(true);
  });

  it('refuses an offset that is not a whole number of sectors', async () => {
    const device = await open(file, { write: true });
    await expect(device.write(100, Buffer.alloc(512))).rejects.toThrow(/offset 100 is not a multiple of the logical sector size 512/);
    await expect(device.read(513, 10)).rejects.toThrow(RangeError);
    await device.close();
  });

  it('reports failures with the errno name, the system call and the path', async () => {
    const missing = await rejection(openNativeBlockDevice(join(dir, 'nope'), { write: true }));
    expect(missing).toMatchObject({ code: 'ENOENT', syscall: 'open', path: join(dir, 'nope') });
    expect(missing.message).toMatch(/^ENOENT: No such file or directory, open '.*nope'/);
    expect(missing.hint).toMatch(/lsblk/);

    const readOnly = await open(file, {});
    expect((await rejection(readOnly.write(0, Buffer.alloc(512)))).code).toBe('EBADF');
    await readOnly.close();
    await readOnly.close(); // twice is harmless
    expect(await rejection(readOnly.size())).toMatchObject({ code: 'EBADF', message: expect.stringContaining('closed') });

    expect((await rejection(openNativeBlockDevice('/dev/null', {}))).code).toBe('ENOTBLK');
  });
});

/**
 * Whether this kernel turns an MBR into partitions (CONFIG_MSDOS_PARTITION). Distribution kernels
 * do; a minimal VM kernel may not, and then BLKRRPART only drops the partitions it had.
 */
function kernelReadsMbr(): boolean {
  for (const [file, unzip] of [['/proc/config.gz', true], [`/boot/config-${release()}`, false]] as const) {
    if (!existsSync(file)) continue;
    const text = unzip ? gunzipSync(readFileSync(file)).toString('utf8') : readFileSync(file, 'utf8');
    return /^CONFIG_MSDOS_PARTITION=y$/m.test(text);
  }
  return true;
}

/** Loop devices: 16 MiB sparse files behind /dev/loopN, detached (and unmounted) whatever happens. */
describe('on a loop device (root)', () => {
  beforeAll(() => {
    if (process.getuid?.() !== 0) throw new Error('these tests need root for loop devices (run them as root, as scripts/test does)');
  });
  const loops: string[] = [];
  const mounts: string[] = [];
  const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  const loop = (name: string, partscan = false): string => {
    const backing = join(dir, name);
    writeFileSync(backing, '');
    truncateSync(backing, 16 * MIB);
    const device = sh('losetup', ['-f', '--show', ...(partscan ? ['-P'] : []), backing]);
    loops.push(device);
    return device;
  };

  afterAll(async () => {
    for (const device of opened) await device.close().catch(() => {});
    const problems: string[] = [];
    for (const mount of mounts.reverse()) {
      try {
        sh('umount', [mount]);
      } catch (e) {
        problems.push(String(e));
      }
    }
    for (const device of loops.reverse()) {
      try {
        sh('losetup', ['-d', device]);
      } catch (e) {
        problems.push(String(e));
      }
    }
    expect(problems).toEqual([]);
  });

  it('has the size and sector sizes the kernel reports', async () => {
    const path = loop('sizes.img');
    const device = await open(path, { write: true, exclusive: true, direct: true });
    expect(device.isBlockDevice).toBe(true);
    expect(await device.size()).toBe(16 * MIB);
    expect(device.logicalSectorSize).toBe(Number(sh('blockdev', ['--getss', path])));
    expect(device.physicalSectorSize).toBe(Number(sh('blockdev', ['--getpbsz', path])));
    await device.close();
  });

  it('writes with O_DIRECT, reads back the same, and flush puts it in the backing file', async () => {
    const path = loop('direct.img');
    const device = await open(path, { write: true, exclusive: true, direct: true, bufferSize: 256 * 1024 });
    const data = randomBytes(MIB + 100); // four full buffers and a partial sector
    await device.write(MIB, data);
    expect((await device.read(MIB, data.length)).equals(data)).toBe(true);
    const tail = await device.read(2 * MIB, 512); // the padded last sector: the data's last 100 bytes, then the zeros that were there
    expect(tail.subarray(0, 100).equals(data.subarray(MIB))).toBe(true);
    expect(tail.subarray(100).equals(Buffer.alloc(412))).toBe(true);
    await device.flush();
    const backing = readFileSync(join(dir, 'direct.img'));
    expect(backing.subarray(MIB, MIB + data.length).equals(data)).toBe(true);
    expect(backing.subarray(0, MIB).equals(Buffer.alloc(MIB))).toBe(true);

    const past = await rejection(device.write(16 * MIB - 512, Buffer.alloc(1024)));
    expect(past).toMatchObject({ code: 'ENOSPC', syscall: 'pwrite' });
    expect(past.message).toMatch(/end past the device's 16777216 bytes/);
    await device.close();
  });

  it('refuses with EBUSY to open exclusively a device that is mounted or already held', async () => {
    const mounted = loop('mounted.img');
    sh('mkfs.ext4', ['-q', '-F', mounted]);
    const mountpoint = join(dir, 'mnt');
    mkdirSync(mountpoint);
    sh('mount', [mounted, mountpoint]);
    mounts.push(mountpoint);
    const busy = await rejection(openNativeBlockDevice(mounted, { write: true, exclusive: true, direct: true }));
    expect(busy).toMatchObject({ code: 'EBUSY', errno: -16, syscall: 'open', path: mounted });
    expect(busy.message).toMatch(/mounted or in use/);
    expect(busy.hint).toMatch(/unmount/);

    const held = loop('held.img');
    const first = await open(held, { write: true, exclusive: true });
    expect((await rejection(openNativeBlockDevice(held, { write: true, exclusive: true }))).code).toBe('EBUSY');
    await first.close();
    const again = await open(held, { write: true, exclusive: true });
    await again.close();
  });

  it('makes the kernel reread the partition table it has just written (losetup -P)', async () => {
    const path = loop('parted.img', true);
    const name = basename(path);
    // A partition the table will not hold (added with BLKPG): the reread must drop it.
    sh('addpart', [path, '2', '20480', '2048']);
    expect(existsSync(`/sys/class/block/${name}p2`)).toBe(true);
    const device = await open(path, { write: true, exclusive: true, direct: true });
    // An MBR with one Linux partition: sectors 2048..10239.
    const mbr = Buffer.alloc(512);
    mbr.writeUInt32LE(0x12345678, 440);
    mbr[446 + 4] = 0x83;
    mbr.writeUInt32LE(2048, 446 + 8);
    mbr.writeUInt32LE(8192, 446 + 12);
    mbr.writeUInt16LE(0xaa55, 510);
    await device.write(0, mbr);
    await device.flush();
    await device.rereadPartitions();
    expect(existsSync(`/sys/class/block/${name}p2`)).toBe(false);
    if (kernelReadsMbr()) {
      expect(Number(readFileSync(`/sys/class/block/${name}p1/size`, 'utf8'))).toBe(8192);
      expect(Number(readFileSync(`/sys/class/block/${name}p1/start`, 'utf8'))).toBe(2048);
    } else {
      expect(existsSync(`/sys/class/block/${name}p1`)).toBe(false); // this kernel has no MBR parser: no partitions at all
    }
    await device.close();
  });

  it('reports clearly that a loop device without partition scanning cannot reread (EINVAL)', async () => {
    const path = loop('plain.img');
    const device = await open(path, { write: true, exclusive: true });
    const error = await rejection(device.rereadPartitions());
    expect(error).toMatchObject({ code: 'EINVAL', syscall: 'ioctl BLKRRPART', path });
    expect(error.message).toMatch(/--partscan/);
    await device.close();
  });
});
