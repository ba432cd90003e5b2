import { describe, expect, it } from 'vitest';
import { nic, parseFeature, parseRingSizes, rxRingSize } from '../../../../../src/shared/tuning/kinds/nic.js';
import { FakeSystem, logRecorder } from '../../../../helpers/fake-node-system.js';

const state = { profile: 'p', board: 'pi5', levers: [], masked_timers: [] };
const rings = (current: number, max = 8192) =>
  `Ring parameters for eth0:\nPre-set maximums:\nRX:\t\t${max}\nRX Mini:\tn/a\nTX:\t\t4096\nCurrent hardware settings:\nRX:\t\t${current}\nRX Mini:\tn/a\nTX:\t\t512\n`;
const features = (gro: string) => `Features for eth0:\nrx-checksumming: on\ngeneric-receive-offload: ${gro}\nlarge-receive-offload: off [fixed]\n`;
const NET = '/sys/class/net/eth0';
const RX0 = `${NET}/queues/rx-0`;

/** A Pi 5's macb NIC with its link up, the given ring and GRO state and sysfs readings. */
function pi5(opts: { ring?: number; gro?: string; files?: Record<string, string>; commands?: Record<string, { code?: number; stdout?: string; stderr?: string }> } = {}) {
  return new FakeSystem({
    nics: [{ name: 'eth0', driver: 'macb', irqs: [105, 106], queues: [RX0] }],
    files: { [`${NET}/operstate`]: 'up', ...opts.files },
    commands: {
      'ethtool -g eth0': { stdout: rings(opts.ring ?? 512) },
      'ethtool -k eth0': { stdout: features(opts.gro ?? 'on') },
      'ethtool -K eth0 gro off': {},
      'ethtool -G eth0 rx 8192': {},
      ...opts.commands,
    },
  });
}

describe('ethtool output', () => {
  it('reads the RX ring maximum and current size', () => {
    expect(parseRingSizes(rings(512))).toEqual({ max: 8192, current: 512 });
    expect(parseRingSizes('Ring parameters for eth0:\n')).toBeUndefined();
  });

  it('reads a feature, ignoring [fixed]', () => {
    expect(parseFeature(features('off'), 'generic-receive-offload')).toBe('off');
    expect(parseFeature(features('off'), 'large-receive-offload')).toBe('off');
    expect(parseFeature(features('off'), 'rx-gro-hw')).toBeUndefined();
  });
});

describe('rx ring size', () => {
  const sizes = { max: 8192, current: 512 };
  it('max is the driver’s maximum', () => expect(rxRingSize('max', sizes)).toBe(8192));
  it('a number is taken as is, from the profile’s string or number', () => {
    expect(rxRingSize(1024, sizes)).toBe(1024);
    expect(rxRingSize('4096', sizes)).toBe(4096);
  });
  it('a number above the maximum is capped at it', () => expect(rxRingSize(16384, sizes)).toBe(8192));
});

describe('NIC lever kind', () => {
  it('describes its settings and the unit that applies them', () => {
    expect(nic.describe({ irq_cpus: '3', rps_cpus: '3', rps_flow_entries: 32768 })).toBe('NIC irq_cpus=3, rps_cpus=3, rps_flow_entries=32768 (pi-image-nic-tuning.service)');
  });

  it('renders nothing into the image', () => {
    expect(nic.render).toBeUndefined();
  });

  it('applies the merged settings of every lever to the interface --nic names', async () => {
    const sys = pi5();
    const { lines, log } = logRecorder();
    await nic.apply?.(
      [{ gro: 'off' }, { rx_ring: 'max' }, { irq_cpus: '3', rps_cpus: '3', rps_flow_entries: 32768 }, { napi_defer_hard_irqs: 2, gro_flush_timeout: 200000 }],
      { sys, log, target: { nic: 'eth0' } },
    );
    expect(sys.ran).toEqual(['ethtool -K eth0 gro off', 'ethtool -g eth0', 'ethtool -G eth0 rx 8192']);
    expect(sys.writes).toEqual([
      ['/proc/irq/105/smp_affinity_list', '3'],
      ['/proc/irq/106/smp_affinity_list', '3'],
      [`${RX0}/rps_cpus`, '8'],
      ['/proc/sys/net/core/rps_sock_flow_entries', '32768'],
      [`${RX0}/rps_flow_cnt`, '32768'],
      [`${NET}/napi_defer_hard_irqs`, '2'],
      [`${NET}/gro_flush_timeout`, '200000'],
    ]);
    expect(lines).toEqual([
      'eth0: gro off',
      'eth0: rx ring 8192',
      'eth0: irq 105 on cpus 3',
      'eth0: irq 106 on cpus 3',
      'eth0: napi_defer_hard_irqs 2',
      'eth0: gro_flush_timeout 200000',
    ]);
    expect(sys.slept).toBe(0);
  });

  it('a later lever’s value wins; a ring already at its size is left alone', async () => {
    const sys = pi5({ ring: 1024 });
    const { lines, log } = logRecorder();
    await nic.apply?.([{ rx_ring: 'max' }, { rx_ring: 1024 }], { sys, log, target: { nic: 'eth0' } });
    expect(sys.ran).toEqual(['ethtool -g eth0']);
    expect(lines).toEqual([]);
  });

  it('waits a bounded time for the link, then applies anyway; says what failed', async () => {
    const sys = pi5({ files: { [`${NET}/operstate`]: 'down' }, commands: { 'ethtool -K eth0 gro off': { code: 1, stderr: 'Operation not supported\n' } } });
    const { lines, log } = logRecorder();
    await nic.apply?.([{ gro: 'off', rx_ring: 'max' }], { sys: new FakeSystem(), log, target: { cpu: true } });
    expect(lines).toEqual([]);
    await nic.apply?.([{ gro: 'off' }], { sys, log, target: { nic: 'eth0' } });
    expect(sys.slept).toBe(20_000);
    expect(lines).toEqual(['eth0: link not up after 20s; applying anyway', 'eth0: gro off failed: Operation not supported']);
  });

  it('checks the first physical interface: everything as asked is ok', async () => {
    const sys = pi5({
      ring: 8192,
      gro: 'off',
      files: {
        '/proc/irq/105/smp_affinity_list': '3',
        '/proc/irq/106/smp_affinity_list': '3',
        [`${RX0}/rps_cpus`]: '00000000,00000008',
        '/proc/sys/net/core/rps_sock_flow_entries': '32768',
        [`${NET}/napi_defer_hard_irqs`]: '2',
        [`${NET}/gro_flush_timeout`]: '200000',
      },
    });
    const checks = await nic.check({ gro: 'off', rx_ring: 'max', irq_cpus: '3', rps_cpus: '3', rps_flow_entries: 32768, napi_defer_hard_irqs: 2, gro_flush_timeout: 200000 }, { sys, state });
    expect(checks).toEqual([
      { what: 'eth0 generic-receive-offload', expected: 'off', actual: 'off', status: 'ok' },
      { what: 'eth0 rx ring', expected: '8192', actual: '8192', status: 'ok' },
      { what: '/proc/irq/105/smp_affinity_list', expected: '3', actual: '3', status: 'ok' },
      { what: '/proc/irq/106/smp_affinity_list', expected: '3', actual: '3', status: 'ok' },
      { what: `${RX0}/rps_cpus`, expected: '8', actual: '8', status: 'ok' },
      { what: '/proc/sys/net/core/rps_sock_flow_entries', expected: '32768', actual: '32768', status: 'ok' },
      { what: `${NET}/napi_defer_hard_irqs`, expected: '2', actual: '2', status: 'ok' },
      { what: `${NET}/gro_flush_timeout`, expected: '200000', actual: '200000', status: 'ok' },
    ]);
  });

  it('checks: drift where the NIC differs, the ring against the driver’s maximum', async () => {
    const sys = pi5({ ring: 512, gro: 'on', files: { '/proc/irq/105/smp_affinity_list': '0-3', '/proc/irq/106/smp_affinity_list': '3' } });
    expect(await nic.check({ gro: 'off', rx_ring: 'max', irq_cpus: '3' }, { sys, state })).toEqual([
      { what: 'eth0 generic-receive-offload', expected: 'off', actual: 'on', status: 'drift' },
      { what: 'eth0 rx ring', expected: '8192', actual: '512', status: 'drift' },
      { what: '/proc/irq/105/smp_affinity_list', expected: '3', actual: '0,1,2,3', status: 'drift' },
      { what: '/proc/irq/106/smp_affinity_list', expected: '3', actual: '3', status: 'ok' },
    ]);
  });

  it('checks: n/a without a NIC, without ethtool, without a ring setting or interrupt line', async () => {
    expect(await nic.check({ gro: 'off' }, { sys: new FakeSystem(), state })).toEqual([
      { what: 'nic', expected: '{"gro":"off"}', actual: '-', status: 'n/a', reason: 'no physical Ethernet interface on this machine' },
    ]);
    const bare = new FakeSystem({ nics: [{ name: 'eth0', driver: 'virtio_net' }] });
    expect(await nic.check({ gro: 'off', rx_ring: 'max', irq_cpus: '3', rps_cpus: '3' }, { sys: bare, state })).toEqual([
      { what: 'eth0 gro', expected: 'off', actual: '-', status: 'n/a', reason: 'ethtool is not installed' },
      { what: 'eth0 rx ring', expected: 'max', actual: '-', status: 'n/a', reason: 'driver virtio_net has no RX ring setting' },
      { what: 'eth0 irq affinity', expected: '3', actual: '-', status: 'n/a', reason: 'no interrupt line found for eth0 (driver virtio_net)' },
      { what: 'eth0 rps_cpus', expected: '8', actual: '-', status: 'n/a', reason: 'eth0 has no rx queues in sysfs' },
    ]);
  });
});
