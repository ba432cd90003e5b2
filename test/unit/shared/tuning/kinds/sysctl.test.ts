import { describe, expect, it } from 'vitest';
import { sysctl } from '../../../../../src/shared/tuning/kinds/sysctl.js';
import { FakeSystem, lever } from '../../../../helpers/fake-node-system.js';

const busyPoll = lever('busy_poll', {}, { purpose: 'Busy polling' });
const swappiness = lever('swappiness', {}, { purpose: 'Keep pages' });
const state = { profile: 'p', board: 'pi5', levers: [], masked_timers: [] };

describe('sysctl lever kind', () => {
  it('describes its assignments', () => {
    expect(sysctl.describe({ 'net.core.busy_read': 50, 'net.core.busy_poll': '50' })).toBe('sysctl net.core.busy_read=50, net.core.busy_poll=50');
  });

  it('renders one sysctl.d file with a commented block per lever', () => {
    const files = sysctl.render?.(
      [
        { lever: busyPoll, value: { 'net.core.busy_read': '50', 'net.core.busy_poll': 50 } },
        { lever: swappiness, value: { 'vm.swappiness': '1' } },
      ],
      { profile: 'p', timers: [] },
    );
    expect(files).toEqual([
      {
        path: 'etc/sysctl.d/90-pi-image-tuning.conf',
        content: [
          '# pi-image tuning profile p. Generated: change tuning: in pi-image.yaml, not this file.',
          '',
          '# busy_poll: Busy polling',
          'net.core.busy_read = 50',
          'net.core.busy_poll = 50',
          '',
          '# swappiness: Keep pages',
          'vm.swappiness = 1',
          '',
        ].join('\n'),
      },
    ]);
    expect(sysctl.render?.([], { profile: 'p', timers: [] })).toEqual([]);
  });

  it('is applied by systemd-sysctl, not at boot by pi-node', () => {
    expect(sysctl.apply).toBeUndefined();
  });

  it('checks /proc/sys: ok up to white space, drift, n/a when the key does not exist', async () => {
    const sys = new FakeSystem({ files: { '/proc/sys/net/ipv4/tcp_rmem': '4096\t131072\t8388608\n', '/proc/sys/vm/swappiness': '60' } });
    const checks = await sysctl.check({ 'net.ipv4.tcp_rmem': '4096 131072 8388608', 'vm.swappiness': 1, 'net.core.busy_poll': 50 }, { sys, state });
    expect(checks).toEqual([
      { what: 'sysctl net.ipv4.tcp_rmem', expected: '4096 131072 8388608', actual: '4096\t131072\t8388608', status: 'ok' },
      { what: 'sysctl vm.swappiness', expected: '1', actual: '60', status: 'drift' },
      { what: 'sysctl net.core.busy_poll', expected: '50', actual: '(missing)', status: 'n/a', reason: 'sysctl net.core.busy_poll does not exist on this machine' },
    ]);
  });
});
