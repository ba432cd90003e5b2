import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyLevers, checkLever, describeApply, LEVER_KINDS, renderLevers, resolveApply } from '../../../../../src/shared/tuning/kinds/index.js';
import { FakeSystem, lever, logRecorder } from '../../../../helpers/fake-node-system.js';
import { REPO } from '../../../../helpers/cli.js';

describe('lever kinds registry', () => {
  it('has one kind per key of the apply section the tuning schema allows, in a fixed order', () => {
    const schema = JSON.parse(readFileSync(join(REPO, 'image/schema/tuning.schema.json'), 'utf8'));
    const applyKeys = Object.keys(schema.properties.levers.items.properties.apply.properties);
    expect(LEVER_KINDS.map((k) => k.key)).toEqual(['sysctl', 'modules', 'governor', 'nic', 'engine', 'eeprom', 'mask_timers', 'forbid_config_txt']);
    expect([...applyKeys].sort()).toEqual(LEVER_KINDS.map((k) => k.key).sort());
  });

  it('describes a lever with several kinds in registry order', () => {
    expect(describeApply({ sysctl: { 'net.core.default_qdisc': 'fq' }, modules: ['tcp_bbr'] })).toBe('sysctl net.core.default_qdisc=fq; modules-load tcp_bbr');
    expect(describeApply({})).toBe('');
  });

  it('resolves only what a kind derives', () => {
    expect(resolveApply({ engine: { CPUAffinity: '2-3' }, modules: ['tcp_bbr'] })).toEqual({ engine: { CPUAffinity: '2-3', Environment: { PI_IMAGE_ENGINE_THREADS: '2' } }, modules: ['tcp_bbr'] });
  });

  it('renders only active levers', () => {
    const files = renderLevers(
      [lever('tcp_bbr', { modules: ['tcp_bbr'] }), lever('off', { modules: ['off'] }, { enabled: false }), lever('pi4', { sysctl: { a: 1 } }, { onBoard: false })],
      { profile: 'p', timers: [] },
    );
    expect(files.map((f) => [f.path, f.content])).toEqual([['etc/modules-load.d/pi-image-tuning.conf', '# pi-image tuning profile p. Generated: change tuning: in pi-image.yaml, not this file.\ntcp_bbr\n']]);
  });

  it('applies active levers only, for the run’s target', async () => {
    const sys = new FakeSystem({ dirs: { '/sys/devices/system/cpu': ['cpu0'] }, files: { '/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor': 'ondemand' } });
    const { lines, log } = logRecorder();
    await applyLevers([lever('g', { governor: 'powersave' }, { enabled: false }), lever('h', { governor: 'performance' }), lever('n', { nic: { gro: 'off' } })], { sys, log, target: { cpu: true } });
    expect(sys.writes).toEqual([['/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor', 'performance']]);
    expect(sys.ran).toEqual([]);
    expect(lines).toEqual(['governor performance on 1 cpus']);
  });

  it('checks every kind of a lever', async () => {
    const sys = new FakeSystem({ files: { '/proc/sys/net/core/default_qdisc': 'fq' }, dirs: { '/sys/module/tcp_bbr': ['refcnt'] } });
    const state = { profile: 'p', board: 'pi5', levers: [], masked_timers: [] };
    const checks = await checkLever(lever('tcp_bbr', { modules: ['tcp_bbr'], sysctl: { 'net.core.default_qdisc': 'fq' } }), { sys, state });
    expect(checks.map((c) => [c.what, c.status])).toEqual([
      ['sysctl net.core.default_qdisc', 'ok'],
      ['module tcp_bbr', 'ok'],
    ]);
  });
});
