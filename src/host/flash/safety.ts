import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * What a block device is, and whether it may be written: read from /sys and /proc only.
 * Paths are parameters so that a test can point them at a fake tree.
 */
export interface SystemPaths {
  sys: string;
  mounts: string;
  swaps: string;
}
export const REAL_SYSTEM: SystemPaths = { sys: '/sys', mounts: '/proc/self/mounts', swaps: '/proc/swaps' };

export interface DeviceInfo {
  path: string;
  /** The kernel's name (sda, mmcblk0, loop3). */
  name: string;
  /** Its folder in /sys (…/block/sda). */
  sysDir: string;
  /** "MAJ:MIN". */
  devno: string;
  /** Set when the device is a partition: the disk it is on. */
  partitionOf?: string;
  size: number;
  model: string;
  removable: boolean;
}

export interface Refusal {
  reason: string;
  /** Only "not removable" is overridden by --force. */
  overridableByForce: boolean;
}

const read = (path: string): string | undefined => {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
};
const list = (path: string): string[] => {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
};
const devnoOf = (rdev: number): string => `${Math.floor(rdev / 256) & 0xfff}:${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)}`;

/** "MAJ:MIN" of a block device node, or undefined when `path` is not one. */
export function blockDevno(path: string): string | undefined {
  try {
    const st = statSync(path);
    return st.isBlockDevice() ? devnoOf(st.rdev) : undefined;
  } catch {
    return undefined;
  }
}

export function deviceInfo(path: string, sys: SystemPaths = REAL_SYSTEM): DeviceInfo {
  const devno = blockDevno(path);
  if (!devno) throw new Error(`${path} is not a block device`);
  const sysDir = realpathSync(join(sys.sys, 'dev/block', devno));
  const name = basename(sysDir);
  const partitionOf = existsSync(join(sysDir, 'partition')) ? basename(dirname(sysDir)) : undefined;
  const diskDir = partitionOf ? dirname(sysDir) : sysDir;
  const model = [read(join(diskDir, 'device/vendor')), read(join(diskDir, 'device/model')) ?? read(join(diskDir, 'device/name'))].filter(Boolean).join(' ');
  return {
    path,
    name,
    sysDir,
    devno,
    ...(partitionOf ? { partitionOf } : {}),
    size: Number(read(join(sysDir, 'size')) ?? 0) * 512,
    model: model || (name.startsWith('loop') ? `loop device${read(join(sysDir, 'loop/backing_file')) ? ` on ${read(join(sysDir, 'loop/backing_file'))}` : ''}` : '(no model)'),
    removable: read(join(diskDir, 'removable')) === '1',
  };
}

/** The sysfs folder of a "MAJ:MIN". */
function sysDirOf(devno: string, sys: SystemPaths): string | undefined {
  try {
    return realpathSync(join(sys.sys, 'dev/block', devno));
  } catch {
    return undefined;
  }
}

/** A disk, its partitions, and whatever is stacked on them (device mapper, md), recursively. */
export function deviceFamily(sysDir: string, sys: SystemPaths = REAL_SYSTEM): Map<string, string> {
  const family = new Map<string, string>(); // devno → name
  const visit = (dir: string) => {
    const devno = read(join(dir, 'dev'));
    if (!devno || family.has(devno)) return;
    family.set(devno, basename(dir));
    for (const entry of list(dir)) if (existsSync(join(dir, entry, 'partition'))) visit(join(dir, entry));
    for (const holder of list(join(dir, 'holders'))) {
      const d = sysDirOf(read(join(sys.sys, 'class/block', holder, 'dev')) ?? '', sys);
      if (d) visit(d);
    }
  };
  visit(sysDir);
  return family;
}

/**
 * The devices the running system stands on: the one holding `/`, its disk, what it is stacked
 * on (device mapper slaves) and, for a loop device, the device holding its backing file.
 */
export function systemDevices(sys: SystemPaths = REAL_SYSTEM, rootPath = '/'): Set<string> {
  const found = new Set<string>();
  const visitDevno = (devno: string) => {
    if (found.has(devno)) return;
    found.add(devno);
    const dir = sysDirOf(devno, sys);
    if (!dir) return;
    if (existsSync(join(dir, 'partition'))) {
      const disk = read(join(dirname(dir), 'dev'));
      if (disk) visitDevno(disk);
    }
    for (const slave of list(join(dir, 'slaves'))) {
      const d = read(join(sys.sys, 'class/block', slave, 'dev'));
      if (d) visitDevno(d);
    }
    const backing = read(join(dir, 'loop/backing_file'));
    if (backing) {
      try {
        visitDevno(devnoOf(statSync(backing).dev));
      } catch {
        /* a deleted backing file */
      }
    }
  };
  try {
    visitDevno(devnoOf(statSync(rootPath).dev));
  } catch {
    /* no stat of / */
  }
  for (const m of parseMounts(read(sys.mounts) ?? '')) {
    if (m.mountpoint !== rootPath) continue;
    const devno = blockDevno(m.source);
    if (devno) visitDevno(devno);
  }
  return found;
}

/** /proc/self/mounts lines, with the kernel's octal escapes (\040 for a space) undone. */
export function parseMounts(text: string): { source: string; mountpoint: string }[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return text
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length >= 2)
    .map((f) => ({ source: unescape(f[0] as string), mountpoint: unescape(f[1] as string) }));
}

/** Where members of `family` are mounted or used as swap. */
export function mountsOf(family: Map<string, string>, sys: SystemPaths = REAL_SYSTEM): string[] {
  const uses: string[] = [];
  for (const m of parseMounts(read(sys.mounts) ?? '')) {
    if (!m.source.startsWith('/')) continue;
    const devno = blockDevno(m.source);
    if (devno && family.has(devno)) uses.push(`${family.get(devno)} on ${m.mountpoint}`);
  }
  for (const line of (read(sys.swaps) ?? '').split('\n').slice(1)) {
    const source = line.split(/\s+/)[0];
    const devno = source ? blockDevno(source) : undefined;
    if (devno && family.has(devno)) uses.push(`${family.get(devno)} as swap`);
  }
  return uses;
}

/** Every reason not to write `info`; an empty list means it may be written. */
export function refusals(info: DeviceInfo, sys: SystemPaths = REAL_SYSTEM, rootPath = '/'): Refusal[] {
  const out: Refusal[] = [];
  if (info.partitionOf) {
    out.push({ reason: `${info.path} is a partition of ${info.partitionOf}: an image holds a partition table and goes onto the whole disk (/dev/${info.partitionOf})`, overridableByForce: false });
  }
  const diskDir = info.partitionOf ? dirname(info.sysDir) : info.sysDir;
  const family = deviceFamily(diskDir, sys);
  const system = systemDevices(sys, rootPath);
  const holdsSystem = [...family.keys()].filter((d) => system.has(d));
  if (holdsSystem.length) {
    out.push({ reason: `${info.path} holds the running system (${holdsSystem.map((d) => family.get(d)).join(', ')} under /)`, overridableByForce: false });
  }
  const mounted = mountsOf(family, sys);
  if (mounted.length) out.push({ reason: `${info.path} is in use: ${mounted.join(', ')}; unmount it first`, overridableByForce: false });
  const holders = [...family.entries()].filter(([, name]) => list(join(sys.sys, 'class/block', name, 'holders')).length > 0);
  if (holders.length) {
    out.push({ reason: `${info.path} is in use by ${holders.map(([, n]) => `${n} (held by ${list(join(sys.sys, 'class/block', n, 'holders')).join(', ')})`).join(', ')}`, overridableByForce: false });
  }
  if (!info.removable) {
    out.push({ reason: `${info.path} is not a removable device (${info.model}, ${formatBytes(info.size)})`, overridableByForce: true });
  }
  return out;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}
