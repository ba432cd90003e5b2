import { describe, expect, it } from 'vitest';
import { derivedFatVolumeId, derivedUuid, MIB, planLayout, sfdiskScript } from '../../../../src/host/disk/layout.js';

describe('disk layout', () => {
  // Root: 700 MiB content + 84 MiB (12 %) + 30000 inodes × 512 B (14.6 MiB) + 64 MiB + 256 MiB headroom
  // = 1118.6 MiB, rounded up to 8 MiB: 1120 MiB (2293760 sectors).
  const layout = planLayout({ diskId: '1a2b3c4d', bootOffsetMib: 8, bootMib: 512, rootContentBytes: 700 * MIB, rootInodes: 30000, headroomMib: 256 });

  it('puts a 512 MiB boot partition at 8 MiB and the root right after, sized for its content, overhead and headroom', () => {
    expect(layout).toEqual({
      diskId: '1a2b3c4d',
      totalBytes: 1640 * MIB,
      boot: { startBytes: 8 * MIB, sizeBytes: 512 * MIB, type: 'c', label: 'bootfs' },
      root: { startBytes: 520 * MIB, sizeBytes: 1120 * MIB, type: '83', label: 'rootfs' },
    });
  });

  it('starts the root on the next 8 MiB boundary after the boot partition', () => {
    // Boot 4 MiB + 250 MiB ends at 254 MiB: root at 256 MiB. 10 MiB + 1.2 MiB (12 %) + 64 MiB = 75.2 MiB rounds up to 80 MiB.
    const small = planLayout({ diskId: '00000001', bootOffsetMib: 4, bootMib: 250, rootContentBytes: 10 * MIB, rootInodes: 0, headroomMib: 0 });
    expect([small.root.startBytes, small.root.sizeBytes, small.totalBytes]).toEqual([256 * MIB, 80 * MIB, 336 * MIB]);
  });

  it('writes an MBR script with the disk id and partition types of Raspberry Pi OS', () => {
    expect(sfdiskScript(layout)).toBe(
      'label: dos\nlabel-id: 0x1a2b3c4d\nunit: sectors\nsector-size: 512\n\nstart=16384, size=1048576, type=c\nstart=1064960, size=2293760, type=83\n',
    );
  });

  it('derives UUIDs and the FAT volume id from the disk id', () => {
    // sha256("1a2b3c4d:rootfs") = dae6dfef 8bdd e6b0 bda9 0d9cb92cba2a…: version nibble 4, variant bits 10.
    expect(derivedUuid('1a2b3c4d', 'rootfs')).toBe('dae6dfef-8bdd-46b0-bda9-0d9cb92cba2a');
    expect(derivedUuid('1a2b3c4d', 'other')).toBe('82fc4b8a-eb27-48b7-a11c-002cbe378c26');
    // sha256("1a2b3c4d:fat") starts 6386403f.
    expect(derivedFatVolumeId('1a2b3c4d')).toBe('6386403f');
  });
});
