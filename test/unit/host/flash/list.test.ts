import { describe, expect, it } from 'vitest';
import { candidatesFromLsblk, formatCandidates } from '../../../../src/host/flash/list.js';

const LSBLK = JSON.stringify({
  blockdevices: [
    { name: 'sda', path: '/dev/sda', size: 256060514304, model: 'Samsung SSD  ', rm: false, mountpoints: [null], label: null, type: 'disk', pkname: null,
      children: [{ name: 'sda1', path: '/dev/sda1', size: 1000, model: null, rm: false, mountpoints: ['/', '/var/log'], label: 'root', type: 'part', pkname: 'sda' }] },
    { name: 'sdb', path: '/dev/sdb', size: 31914983424, model: 'SD Card Reader', rm: true, mountpoints: [null], label: null, type: 'disk', pkname: null,
      children: [
        { name: 'sdb1', path: '/dev/sdb1', size: 1, rm: true, mountpoints: ['/media/u/bootfs'], label: 'bootfs', type: 'part', pkname: 'sdb' },
        { name: 'sdb2', path: '/dev/sdb2', size: 1, rm: true, mountpoints: [null], label: 'rootfs', type: 'part', pkname: 'sdb' },
      ] },
    { name: 'loop0', path: '/dev/loop0', size: 0, rm: false, mountpoints: [null], type: 'loop' },
    { name: 'sr0', path: '/dev/sr0', size: 1024, rm: true, mountpoints: [null], type: 'rom' },
  ],
});

describe('candidatesFromLsblk', () => {
  it('lists disks with their partitions\' mounts and labels, marking the system disk', () => {
    const list = candidatesFromLsblk(LSBLK);
    expect(list).toEqual([
      { path: '/dev/sda', size: 256060514304, model: 'Samsung SSD', removable: false, mounted: ['/', '/var/log'], labels: ['root'], type: 'disk', system: true },
      { path: '/dev/sdb', size: 31914983424, model: 'SD Card Reader', removable: true, mounted: ['/media/u/bootfs'], labels: ['bootfs', 'rootfs'], type: 'disk', system: false },
    ]);
    const table = formatCandidates(list);
    expect(table).toMatch(/^PATH\s+SIZE\s+MODEL\s+REMOVABLE\s+MOUNTED\s+LABELS\n/);
    expect(table).toMatch(/\/dev\/sda\s+238\.5 GiB\s+Samsung SSD\s+no\s+SYSTEM\s+root/);
    expect(table).toMatch(/\/dev\/sdb\s+29\.7 GiB\s+SD Card Reader\s+yes\s+\/media\/u\/bootfs\s+bootfs,rootfs/);
  });
});
