import { describe, expect, it } from 'vitest';
import { engineMemory, formatDoctor, formatEngineMemory, runDoctor } from '../../../src/node/doctor.js';
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

describe('pi-node doctor: the engine against its memory budget', () => {
  const show = { 'systemctl show -p MainPID --value pi-image-engine.service': { stdout: '4242\n', code: 0 } };
  const proc = (name: string, rssKib: number) => ({ '/proc/4242/status': `Name:\t${name}\nUmask:\t0077\nVmRSS:\t  ${rssKib} kB\n` });

  it("reads the engine's resident size and compares it with its role's budget", async () => {
    const root = await engineMemory({ root: 900, worker: 400 }, new FakeSystem({ commands: show, files: proc('llama-server', 512 * 1024) }));
    expect(root).toEqual({ status: 'ok', role: 'root', residentMib: 512, budgetMib: 900 });
    expect(formatEngineMemory(root)).toBe("ok       engine memory    the root's engine holds 512 MiB of its 900 MiB budget\n");
    const worker = await engineMemory({ root: 900, worker: 400 }, new FakeSystem({ commands: show, files: proc('ggml-rpc-server', 401 * 1024) }));
    expect(worker).toMatchObject({ status: 'over', role: 'worker', residentMib: 401, budgetMib: 400 });
    expect(formatEngineMemory(worker)).toMatch(/^over +engine memory +the worker's engine holds 401 MiB of its 400 MiB budget: this node may swap/);
  });

  it('says why it cannot tell: no budget, no engine running', async () => {
    expect(await engineMemory(undefined, new FakeSystem())).toMatchObject({ status: 'n/a', reason: expect.stringContaining('no budget') });
    const stopped = { 'systemctl show -p MainPID --value pi-image-engine.service': { stdout: '0\n', code: 0 } };
    expect(await engineMemory({ root: 900 }, new FakeSystem({ commands: stopped }))).toEqual({ status: 'n/a', reason: 'the engine is not running' });
  });
});
