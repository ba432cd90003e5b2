import { describe, expect, it } from 'vitest';
import type { LeverUse } from '../../../../../src/shared/tuning/kind.js';
import { engine, parseEnvironment } from '../../../../../src/shared/tuning/kinds/engine.js';
import { FakeSystem, lever } from '../../../../helpers/fake-node-system.js';

const state = { profile: 'p', board: 'pi5', levers: [], masked_timers: [] };
const JEMALLOC = '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2';
const SHOW = 'systemctl show pi-image-engine.service -p CPUAffinity -p LimitMEMLOCK -p Nice -p Environment -p LoadState';
const unit = (props: string) => new FakeSystem({ commands: { [SHOW]: { stdout: props } }, files: { [JEMALLOC]: '\x7fELF' } });

describe('engine unit lever kind', () => {
  it('describes the unit properties', () => {
    expect(engine.describe({ CPUAffinity: '0-2', Environment: { PI_IMAGE_ENGINE_THREADS: '3' } })).toBe('engine unit CPUAffinity=0-2, PI_IMAGE_ENGINE_THREADS=3');
    expect(engine.describe({ LimitMEMLOCK: 'infinity', Nice: -10 })).toBe('engine unit LimitMEMLOCK=infinity, Nice=-10');
  });

  it('resolves the thread count from the CPU set, replacing any given one', () => {
    expect(engine.resolve?.({ CPUAffinity: '0-1' })).toEqual({ CPUAffinity: '0-1', Environment: { PI_IMAGE_ENGINE_THREADS: '2' } });
    expect(engine.resolve?.({ CPUAffinity: '0,2-3', Environment: { PI_IMAGE_ENGINE_THREADS: '7', A: 'b' } })).toEqual({
      CPUAffinity: '0,2-3',
      Environment: { PI_IMAGE_ENGINE_THREADS: '3', A: 'b' },
    });
    expect(engine.resolve?.({ Nice: -10 })).toEqual({ Nice: -10 });
  });

  it('renders one drop-in for the engine unit, a commented block per lever', () => {
    const uses: LeverUse<'engine'>[] = [
      { lever: lever('engine_cpus', {}, { purpose: 'Pinned' }), value: { CPUAffinity: '0-1', Environment: { PI_IMAGE_ENGINE_THREADS: '2' } } },
      { lever: lever('jemalloc', {}, { purpose: 'Allocator' }), value: { Environment: { LD_PRELOAD: JEMALLOC, MALLOC_CONF: 'narenas:2' } } },
      { lever: lever('tuned', {}, { purpose: 'Both' }), value: { Nice: -10, LimitMEMLOCK: 'infinity' } },
    ];
    expect(engine.render?.(uses, { profile: 'p', timers: [] })).toEqual([
      {
        path: 'usr/lib/systemd/system/pi-image-engine.service.d/10-tuning.conf',
        content: [
          '# pi-image tuning profile p. Generated: change tuning: in pi-image.yaml, not this file.',
          '[Service]',
          '# engine_cpus: Pinned',
          'CPUAffinity=0-1',
          'Environment="PI_IMAGE_ENGINE_THREADS=2"',
          '# jemalloc: Allocator',
          `Environment="LD_PRELOAD=${JEMALLOC}"`,
          'Environment="MALLOC_CONF=narenas:2"',
          '# tuned: Both',
          'LimitMEMLOCK=infinity',
          'Nice=-10',
          '',
        ].join('\n'),
      },
    ]);
    expect(engine.render?.([], { profile: 'p', timers: [] })).toEqual([]);
  });

  it('reads systemd’s Environment= line', () => {
    expect([...parseEnvironment('PI_IMAGE_ENGINE_THREADS=3 "MALLOC_CONF=a b" LD_PRELOAD=/x.so')]).toEqual([
      ['PI_IMAGE_ENGINE_THREADS', '3'],
      ['MALLOC_CONF', 'a b'],
      ['LD_PRELOAD', '/x.so'],
    ]);
  });

  it('checks the unit’s effective properties and that the preloaded library exists', async () => {
    const sys = unit(`CPUAffinity=0-2\nLimitMEMLOCK=infinity\nNice=-5\nEnvironment=PI_IMAGE_ENGINE_THREADS=3 LD_PRELOAD=${JEMALLOC}\nLoadState=loaded\n`);
    expect(await engine.check({ CPUAffinity: '0-2', LimitMEMLOCK: 'infinity', Nice: -10, Environment: { PI_IMAGE_ENGINE_THREADS: '3', LD_PRELOAD: JEMALLOC, MALLOC_CONF: 'x' } }, { sys, state })).toEqual([
      { what: 'pi-image-engine.service CPUAffinity', expected: '0,1,2', actual: '0,1,2', status: 'ok' },
      { what: 'pi-image-engine.service LimitMEMLOCK', expected: 'infinity', actual: 'infinity', status: 'ok' },
      { what: 'pi-image-engine.service Nice', expected: '-10', actual: '-5', status: 'drift' },
      { what: 'pi-image-engine.service Environment PI_IMAGE_ENGINE_THREADS', expected: '3', actual: '3', status: 'ok' },
      { what: `pi-image-engine.service Environment LD_PRELOAD`, expected: JEMALLOC, actual: JEMALLOC, status: 'ok' },
      { what: 'pi-image-engine.service Environment MALLOC_CONF', expected: 'x', actual: '', status: 'drift' },
      { what: `${JEMALLOC} installed`, expected: 'present', actual: 'present', status: 'ok' },
    ]);
  });

  it('checks: a library that cannot be read but exists is present; one that does not exist is missing', async () => {
    const props = `Environment=LD_PRELOAD=/lib/a.so\n`;
    const unreadable = new FakeSystem({ commands: { [SHOW]: { stdout: props }, 'test -e /lib/a.so': {} } });
    const gone = new FakeSystem({ commands: { [SHOW]: { stdout: props }, 'test -e /lib/a.so': { code: 1 } } });
    expect((await engine.check({ Environment: { LD_PRELOAD: '/lib/a.so' } }, { sys: unreadable, state }))[1]?.status).toBe('ok');
    expect((await engine.check({ Environment: { LD_PRELOAD: '/lib/a.so' } }, { sys: gone, state }))[1]).toEqual({ what: '/lib/a.so installed', expected: 'present', actual: 'missing', status: 'drift' });
  });

  it('checks: n/a without systemd', async () => {
    expect(await engine.check({ Nice: -10 }, { sys: new FakeSystem(), state })).toEqual([
      { what: 'pi-image-engine.service', expected: '{"Nice":-10}', actual: '-', status: 'n/a', reason: 'systemd is not available' },
    ]);
  });
});
