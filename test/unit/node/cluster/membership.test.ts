import { describe, expect, it } from 'vitest';
import type { Announcement } from '../../../../src/shared/discovery-protocol.js';
import { announcement } from '../../../helpers/announcement.js';
import { engineWorkers, workerSetKey } from '../../../../src/node/cluster/membership.js';

const node = announcement;

describe('engine workers', () => {
  const self = node('a', { role: 'root', root: 'a' });
  it('starts the engine only with size - 1 ready workers of this root, lowest ids first', () => {
    const w = (id: string, extra: Partial<Announcement> = {}) => node(id, { role: 'worker', root: 'a', engine: 'ready', ...extra });
    expect(engineWorkers({ self, peers: [w('c'), w('b', { engine: 'starting' })], size: 3 })).toBeUndefined();
    expect(engineWorkers({ self, peers: [w('c'), w('b'), w('d'), w('x', { root: 'q' })], size: 3 })?.map((p) => p.node)).toEqual(['b', 'c']);
    expect(engineWorkers({ self, peers: [], size: 1 })).toEqual([]);
  });

  it('after a failover goes on with the ready workers of its term, as many as the engine can use', () => {
    const root = node('a', { role: 'root', root: 'a', term: 1 });
    const w = (id: string, extra: Partial<Announcement> = {}) => node(id, { role: 'worker', root: 'a', engine: 'ready', term: 1, ...extra });
    const powerOfTwo = (n: number) => 2 ** Math.floor(Math.log2(n));
    expect(engineWorkers({ self: root, peers: [w('b')], size: 4 })?.map((p) => p.node)).toEqual(['b']);
    expect(engineWorkers({ self: root, peers: [w('b'), w('c')], size: 4 }, [], powerOfTwo)?.map((p) => p.node)).toEqual(['b']);
    expect(engineWorkers({ self: root, peers: [w('b', { term: 0 })], size: 4 })).toEqual([]);
  });

  it('changes its key when a worker rebooted', () => {
    const w = node('b', { role: 'worker', root: 'a', engine: 'ready' });
    expect(workerSetKey([w])).not.toBe(workerSetKey([{ ...w, boot: 'again' }]));
  });

  it("changes its key when a worker's engine server restarted, not when only its agent did", () => {
    const w = { ...node('b', { role: 'worker', root: 'a', engine: 'ready' }), machineBoot: 'm1', engineRun: 'r1' };
    expect(workerSetKey([w])).not.toBe(workerSetKey([{ ...w, engineRun: 'r2' }]));
    expect(workerSetKey([w])).toBe(workerSetKey([{ ...w, boot: 'agent-again' }]));
  });
});
