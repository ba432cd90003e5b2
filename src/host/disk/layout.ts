import { createHash } from 'node:crypto';

export const SECTOR = 512;
export const MIB = 1024 * 1024;
const ALIGN = 8 * MIB;

export interface DiskLayout {
  diskId: string;
  totalBytes: number;
  boot: { startBytes: number; sizeBytes: number; type: 'c'; label: 'bootfs' };
  root: { startBytes: number; sizeBytes: number; type: '83'; label: 'rootfs' };
}

const alignUp = (n: number, to = ALIGN) => Math.ceil(n / to) * to;

/**
 * Sizes the disk: boot partition where the board profile says (Pi OS: 512 MiB at 8 MiB),
 * root partition right after it, sized from its content plus ext4 overhead plus headroom,
 * everything aligned to 8 MiB.
 */
export function planLayout(opts: {
  diskId: string;
  bootOffsetMib: number;
  bootMib: number;
  rootContentBytes: number;
  rootInodes: number;
  headroomMib: number;
}): DiskLayout {
  const bootStart = opts.bootOffsetMib * MIB;
  const bootSize = opts.bootMib * MIB;
  const rootStart = alignUp(bootStart + bootSize);
  // ext4 overhead: 256-byte inodes at one per 16 KiB, the journal, reserved blocks, metadata.
  const overhead = opts.rootContentBytes * 0.12 + opts.rootInodes * 512 + 64 * MIB;
  const rootSize = alignUp(opts.rootContentBytes + overhead + opts.headroomMib * MIB);
  return {
    diskId: opts.diskId,
    totalBytes: rootStart + rootSize,
    boot: { startBytes: bootStart, sizeBytes: bootSize, type: 'c', label: 'bootfs' },
    root: { startBytes: rootStart, sizeBytes: rootSize, type: '83', label: 'rootfs' },
  };
}

/** The sfdisk script for a layout (MBR, like Raspberry Pi OS). */
export function sfdiskScript(layout: DiskLayout): string {
  const s = (bytes: number) => bytes / SECTOR;
  return [
    'label: dos',
    `label-id: 0x${layout.diskId}`,
    'unit: sectors',
    'sector-size: 512',
    '',
    `start=${s(layout.boot.startBytes)}, size=${s(layout.boot.sizeBytes)}, type=${layout.boot.type}`,
    `start=${s(layout.root.startBytes)}, size=${s(layout.root.sizeBytes)}, type=${layout.root.type}`,
    '',
  ].join('\n');
}

/** Deterministic identifiers derived from the disk id, so rebuilds are byte-identical. */
export function derivedUuid(diskId: string, purpose: string): string {
  const h = createHash('sha256').update(`${diskId}:${purpose}`).digest('hex');
  // RFC 4122 version 4 layout, filled from the hash instead of randomness.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${((parseInt(h[16] ?? '0', 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function derivedFatVolumeId(diskId: string): string {
  return createHash('sha256').update(`${diskId}:fat`).digest('hex').slice(0, 8);
}
