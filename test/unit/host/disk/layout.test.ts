import { describe, expect, it } from 'vitest';
import { derivedUuid, MIB, planLayout, sfdiskScript } from '../../../../src/host/disk/layout.js';

describe('disk layout', () => {
  const layout = planLayout({ diskId: '1a2b3c4d', bootOffsetMib: 8, bootMib: 512, rootContentBytes: 700 * MIB, rootInodes: 30000, headroomMib: 256 });

  it('puts a 512 MiB boot partition at 8 MiB and the root right after, 8 MiB aligned', () => {
    expect(layout.boot.startBytes).toBe(8 * MIB);
    expect(layout.boot.sizeBytes).toBe(512 * MIB);
    expect(layout.root.startBytes).toBe(520 * MIB);
    expect(layout.root.sizeBytes % (8 * MIB)).toBe(0);
    expect(layout.totalBytes).toBe(layout.root.startBytes + layout.root.sizeBytes);
  });

  it('leaves room for the content, ext4 overhead and the headroom', () => {
    expect(layout.root.sizeBytes).toBeGreaterThanOrEqual(700 * MIB + 256 * MIB + 64 * MIB);
  });

  it('writes an MBR script with the disk id and partition types of Raspberry Pi OS', () => {
    expect(sfdiskScript(layout)).toBe(
      `label: dos\nlabel-id: 0x1a2b3c4d\nunit: sectors\nsector-size: 512\n\nstart=16384, size=1048576, type=c\nstart=1064960, size=${layout.root.sizeBytes / 512}, type=83\n`,
    );
  });

  it('derives stable, well-formed UUIDs', () => {
    const a = derivedUuid('1a2b3c4d', 'rootfs');
    expect(a).toBe(derivedUuid('1a2b3c4d', 'rootfs'));
    expect(a).not.toBe(derivedUuid('1a2b3c4d', 'other'));
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
