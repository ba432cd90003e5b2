import { describe, expect, it } from 'vitest';
import { modules } from '../../../../../src/shared/tuning/kinds/modules.js';
import { FakeSystem, lever } from '../../../../helpers/fake-node-system.js';

const state = { profile: 'p', board: 'pi5', levers: [], masked_timers: [] };

describe('kernel modules lever kind', () => {
  it('describes the modules', () => {
    expect(modules.describe(['tcp_bbr', 'sch_fq'])).toBe('modules-load tcp_bbr, sch_fq');
  });

  it('renders one modules-load.d file listing the modules of every lever', () => {
    expect(modules.render?.([{ lever: lever('a', {}), value: ['tcp_bbr'] }, { lever: lever('b', {}), value: ['sch_fq'] }], { profile: 'p', timers: [] })).toEqual([
      {
        path: 'etc/modules-load.d/pi-image-tuning.conf',
        content: '# pi-image tuning profile p. Generated: change tuning: in pi-image.yaml, not this file.\ntcp_bbr\nsch_fq\n',
      },
    ]);
    expect(modules.render?.([], { profile: 'p', timers: [] })).toEqual([]);
  });

  it('checks that each module is loaded (/sys/module/<name>)', async () => {
    const sys = new FakeSystem({ dirs: { '/sys/module/tcp_bbr': ['parameters', 'refcnt'] } });
    expect(await modules.check(['tcp_bbr', 'sch_fq'], { sys, state })).toEqual([
      { what: 'module tcp_bbr', expected: 'loaded', actual: 'loaded', status: 'ok' },
      { what: 'module sch_fq', expected: 'loaded', actual: 'not loaded', status: 'drift' },
    ]);
  });
});
