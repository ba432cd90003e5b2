import { describe, expect, it } from 'vitest';
import { formatDoctor, runDoctor } from '../../../src/node/doctor.js';
import { FakeSystem, lever } from '../../helpers/fake-node-system.js';

describe('pi-node doctor', () => {
  it('reports each lever: disabled, for another board, drift, n/a, ok', async () => {
    const sys = new FakeSystem({ files: { '/proc/sys/vm/swappiness': '60' }, dirs: { '/sys/module/tcp_bbr': ['refcnt'] } });
    const state = {
      profile: 'p',
      board: 'qemu',
      masked_timers: [],
      levers: [
        lever('gro_off', { nic: { gro: 'off' } }, { enabled: false, purpose: 'GRO off' }),
        lever('sdram', { eeprom: { SDRAM_BANKLOW: 1 } }, { onBoard: false, purpose: 'Interleave' }),
        lever('swappiness', { sysctl: { 'vm.swappiness': 1 } }, { purpose: 'Keep pages' }),
        lever('cpu_governor', { governor: 'performance' }, { purpose: 'Governor' }),
        lever('tcp_bbr', { modules: ['tcp_bbr'] }, { purpose: 'BBR' }),
      ],
    };
    const reports = await runDoctor(state, sys);
    expect(reports.map((r) => [r.id, r.status, r.reason])).toEqual([
      ['gro_off', 'disabled', 'switched off in pi-image.yaml (tuning:)'],
      ['sdram', 'n/a', 'for pi5; this image is for qemu'],
      ['swappiness', 'drift', undefined],
      ['cpu_governor', 'n/a', 'no cpufreq on this machine (a VM has none)'],
      ['tcp_bbr', 'ok', undefined],
    ]);
    expect(formatDoctor(reports)).toBe(
      [
        'disabled gro_off          GRO off  (switched off in pi-image.yaml (tuning:))',
        'n/a      sdram            Interleave  (for pi5; this image is for qemu)',
        'drift    swappiness       Keep pages',
        '           drift  sysctl vm.swappiness: expected 1, actual 60',
        'n/a      cpu_governor     Governor  (no cpufreq on this machine (a VM has none))',
        '           n/a    cpufreq governor: expected performance, actual - (no cpufreq on this machine (a VM has none))',
        'ok       tcp_bbr          BBR',
        '',
        '1 lever(s) drifted from the tuning profile',
        '',
      ].join('\n'),
    );
  });
});
