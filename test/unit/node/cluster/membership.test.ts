import { describe, expect, it } from 'vitest';
import type { Announcement } from '../../../../src/shared/discovery-protocol.js';
import { decideRole, engineWorkers, workerSetKey } from '../../../../src/node/cluster/membership.js';

const node = (id: string, extra: Partial<Announcement> = {}): Announcement => ({
  v: 2,
  cluster: 'pi',
  node: id,
  hostname: `pi-${id}`,
  boot: `${id}-boot`,
  seq: 1,
  addresses: [`10.0.0.${id.charCodeAt(0)}`],
  configured: 'auto',
  role: 'undecided',
  canHoldModel: true,
  engine: 'stopped',
  ...extra,
});

describe('role decision', () => {
  it('waits until the configured cluster size has been heard, whatever the boot order', () => {
    expect(decideRole({ self: node('c'), peers: [node('b')], size: 3 })).toEqual({ role: 'undecided' });
    const all = [node('c'), node('a'), node('b')];
    for (const self of all) {
      const decided = decideRole({ self, peers: all.filter((n) => n !== self), size: 3 });
      expect(decided.root).toBe('a');
      expect(decided.role).toBe(self.node === 'a' ? 'root' : 'worker');
    }
  });

  it('joins an existing root at once, even with a lower id than the root', () => {
    const root = node('m', { role: 'root', root: 'm' });
    expect(decideRole({ self: node('a'), peers: [root], size: 3 })).toEqual({ role: 'worker', root: 'm' });
  });

  it('keeps its persisted role while the root it follows has not been heard (no split brain after a reboot)', () => {
    const self = node('a', { role: 'worker', root: 'm' });
    expect(decideRole({ self, peers: [node('b', { role: 'worker', root: 'm' })], size: 3 })).toEqual({ role: 'worker', root: 'm' });
    expect(decideRole({ self: node('m', { role: 'root', root: 'm' }), peers: [], size: 3 })).toEqual({ role: 'root', root: 'm' });
  });

  it('a node built as root is root; a node built as worker never is', () => {
    expect(decideRole({ self: node('z', { configured: 'root' }), peers: [node('a')], size: 2 })).toEqual({ role: 'root', root: 'z' });
    expect(decideRole({ self: node('a', { configured: 'worker' }), peers: [node('z', { configured: 'root' })], size: 2 })).toEqual({ role: 'worker', root: 'z' });
    expect(decideRole({ self: node('a', { configured: 'worker' }), peers: [node('b', { configured: 'worker' })], size: 2 })).toEqual({ role: 'undecided' });
  });
});

describe('engine workers', () => {
  const self = node('a', { role: 'root', root: 'a' });
  it('starts the engine only with size - 1 ready workers of this root, lowest ids first', () => {
    const w = (id: string, extra: Partial<Announcement> = {}) => node(id, { role: 'worker', root: 'a', engine: 'ready', ...extra });
    expect(engineWorkers({ self, peers: [w('c'), w('b', { engine: 'starting' })], size: 3 })).toBeUndefined();
    expect(engineWorkers({ self, peers: [w('c'), w('b'), w('d'), w('x', { root: 'q' })], size: 3 })?.map((p) => p.node)).toEqual(['b', 'c']);
    expect(engineWorkers({ self, peers: [], size: 1 })).toEqual([]);
  });

  it('changes its key when a worker rebooted', () => {
    const w = node('b', { role: 'worker', root: 'a', engine: 'ready' });
    expect(workerSetKey([w])).not.toBe(workerSetKey([{ ...w, boot: 'again' }]));
  });
});
