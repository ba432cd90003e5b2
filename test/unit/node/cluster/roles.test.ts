import { describe, expect, it } from 'vitest';
import { announcement } from '../../../helpers/announcement.js';
import { decideRole } from '../../../../src/node/cluster/roles.js';

const node = announcement;

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
  it('picks the lowest id among nodes able to hold the model, the same from every node', () => {
    const nodes = [node('c3'), node('a1', { canHoldModel: false }), node('b2')];
    for (const self of nodes) expect(decideRole({ self, peers: nodes.filter((n) => n !== self), size: 3 }).root).toBe('b2');
  });

  it('lets a node built as root win over lower ids, and never elects a node built as worker', () => {
    expect(decideRole({ self: node('a1'), peers: [node('z9', { configured: 'root' })], size: 3 })).toEqual({ role: 'worker', root: 'z9' });
    expect(decideRole({ self: node('a1', { configured: 'worker' }), peers: [], size: 1 })).toEqual({ role: 'undecided' });
  });

  it('keeps an existing root when a node with a lower id boots later', () => {
    expect(decideRole({ self: node('a0'), peers: [node('b2', { role: 'root', root: 'b2' }), node('c3', { role: 'worker', root: 'b2' })], size: 3 })).toEqual({ role: 'worker', root: 'b2' });
  });

  it('after a failover only the highest term counts: an old root comes back as a worker of the new one', () => {
    const oldRoot = node('a', { role: 'root', root: 'a' });
    const newRoot = node('b', { role: 'root', root: 'b', term: 1 });
    const worker = node('c', { role: 'worker', root: 'b', term: 1 });
    expect(decideRole({ self: oldRoot, peers: [newRoot, worker], size: 3 })).toEqual({ role: 'worker', root: 'b' });
    expect(decideRole({ self: worker, peers: [oldRoot, newRoot], size: 3 })).toEqual({ role: 'worker', root: 'b' });
  });

  it('in a failover term, elects among the nodes heard without waiting for the whole cluster', () => {
    const gaveUp = node('c', { role: 'worker', term: 1 });
    const waiting = node('b', { role: 'worker', root: 'a' });
    for (const self of [gaveUp, waiting]) expect(decideRole({ self, peers: [gaveUp, waiting].filter((n) => n !== self), size: 3 }).root).toBe('b');
    expect(decideRole({ self: node('c', { term: 1 }), peers: [], size: 3 })).toEqual({ role: 'root', root: 'c' });
  });
});
