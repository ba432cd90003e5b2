import { describe, expect, it } from 'vitest';
import { AnnouncementVerifier, sign } from '../../src/node/cluster/announce.js';
import { electRoot } from '../../src/node/cluster/election.js';
import { memberSetCommands, renderFirewall } from '../../src/node/cluster/firewall.js';

const secret = Buffer.from('cluster-secret-0123456789abcdef');
const hello = { cluster: 'pi', node: 'n-b', address: '10.42.0.3', configured: 'auto' as const, canHoldModel: true };

describe('discovery announcements', () => {
  it('accepts an authentic announcement once, within the window', () => {
    const v = new AnnouncementVerifier(secret, 'pi');
    const msg = sign(hello, secret, 1_000_000);
    expect(v.verify(msg, 1_000_500)).toMatchObject({ node: 'n-b', address: '10.42.0.3' });
    expect(v.verify(msg, 1_000_600)).toBeUndefined();
    expect(v.counters).toMatchObject({ accepted: 1, replayed: 1 });
  });

  it('drops and counts a wrong secret, a tampered field, another cluster, a stale message and garbage', () => {
    const v = new AnnouncementVerifier(secret, 'pi');
    expect(v.verify(sign(hello, Buffer.from('another-secret'), 1000), 1000)).toBeUndefined();
    const tampered = JSON.parse(sign(hello, secret, 1000).toString());
    tampered.address = '10.42.0.66';
    expect(v.verify(Buffer.from(JSON.stringify(tampered)), 1000)).toBeUndefined();
    expect(v.verify(sign({ ...hello, cluster: 'other' }, secret, 1000), 1000)).toBeUndefined();
    expect(v.verify(sign(hello, secret, 1000), 1000 + 60_000)).toBeUndefined();
    expect(v.verify(Buffer.from('{"v":1'), 1000)).toBeUndefined();
    expect(v.counters).toEqual({ accepted: 0, badTag: 3, stale: 1, replayed: 0, malformed: 1 });
  });
});

describe('root election', () => {
  const node = (id: string, extra: Partial<{ configured: 'auto' | 'root' | 'worker'; root: string; canHoldModel: boolean }> = {}) => ({ node: id, configured: 'auto' as const, canHoldModel: true, ...extra });

  it('picks the lowest id among nodes able to hold the model, the same from every node', () => {
    const nodes = [node('c3'), node('a1', { canHoldModel: false }), node('b2')];
    for (const self of nodes) expect(electRoot({ self, peers: nodes.filter((n) => n !== self) })).toBe('b2');
  });

  it('lets an explicitly configured root win', () => {
    expect(electRoot({ self: node('a1'), peers: [node('z9', { configured: 'root' })] })).toBe('z9');
  });

  it('keeps an existing root when a node with a lower id boots later', () => {
    expect(electRoot({ self: node('a0'), peers: [node('b2', { root: 'b2' }), node('c3', { root: 'b2' })] })).toBe('b2');
  });

  it('never elects a node built as a worker', () => {
    expect(electRoot({ self: node('a1', { configured: 'worker' }), peers: [] })).toBeUndefined();
  });
});

describe('firewall', () => {
  it('lets only cluster members reach the engine ports', () => {
    const rules = renderFirewall({ enginePorts: [50052, 9990], members: ['10.42.0.2', '10.42.0.3'] });
    expect(rules).toContain('elements = { 10.42.0.2, 10.42.0.3 }');
    expect(rules).toContain('tcp dport { 50052, 9990 } ip saddr @members accept');
    expect(rules).toContain('tcp dport { 50052, 9990 } drop');
    expect(memberSetCommands(['10.42.0.4'])).toBe('flush set inet pi_image members\nadd element inet pi_image members { 10.42.0.4 }');
  });
});
