import { describe, expect, it } from 'vitest';
import { AnnouncementVerifier, sign } from '../../../../src/shared/discovery-protocol.js';
import { electRoot } from '../../../../src/node/cluster/election.js';
import { memberSetCommands, renderFirewall } from '../../../../src/node/cluster/firewall.js';

const secret = Buffer.from('cluster-secret-0123456789abcdef');
const hello = {
  cluster: 'pi',
  node: 'n-b',
  hostname: 'pi-n-b',
  boot: 'boot-1',
  seq: 1,
  addresses: ['10.42.0.3'],
  configured: 'auto' as const,
  role: 'undecided' as const,
  canHoldModel: true,
  engine: 'stopped' as const,
};

describe('discovery announcements', () => {
  it('accepts an authentic announcement once, then only newer ones of the same boot', () => {
    const v = new AnnouncementVerifier(secret, 'pi');
    const msg = sign(hello, secret);
    expect(v.verify(msg)).toMatchObject({ node: 'n-b', addresses: ['10.42.0.3'] });
    expect(v.verify(msg)).toBeUndefined();
    expect(v.verify(sign({ ...hello, seq: 2 }, secret))).toMatchObject({ seq: 2 });
    expect(v.verify(sign({ ...hello, seq: 2 }, secret))).toBeUndefined();
    expect(v.counters).toMatchObject({ accepted: 2, replayed: 2 });
  });

  it('accepts a restarted node (new boot id) and never again a message of its previous boot', () => {
    const v = new AnnouncementVerifier(secret, 'pi');
    const old = sign({ ...hello, seq: 5 }, secret);
    expect(v.verify(sign({ ...hello, seq: 4 }, secret))).toBeDefined();
    expect(v.verify(sign({ ...hello, boot: 'boot-2', seq: 1 }, secret))).toMatchObject({ boot: 'boot-2' });
    expect(v.verify(old)).toBeUndefined();
    expect(v.counters).toMatchObject({ accepted: 2, replayed: 1 });
  });

  it('does not depend on the clocks of the nodes agreeing', () => {
    // A node without a time server may be hours off: nothing in the message is checked against the clock.
    const v = new AnnouncementVerifier(secret, 'pi');
    expect(JSON.parse(JSON.parse(sign(hello, secret).toString()).payload)).not.toHaveProperty('ts');
    expect(v.verify(sign(hello, secret))).toBeDefined();
  });

  it('drops and counts a wrong secret, a tampered field, another cluster and garbage', () => {
    const v = new AnnouncementVerifier(secret, 'pi');
    expect(v.verify(sign(hello, Buffer.from('another-secret')))).toBeUndefined();
    const tampered = JSON.parse(sign(hello, secret).toString());
    tampered.payload = tampered.payload.replace('10.42.0.3', '10.42.0.66');
    expect(v.verify(Buffer.from(JSON.stringify(tampered)))).toBeUndefined();
    expect(v.verify(sign({ ...hello, cluster: 'other' }, secret))).toBeUndefined();
    expect(v.verify(Buffer.from('{"v":1'))).toBeUndefined();
    expect(v.verify(Buffer.from('{"payload":1,"tag":"00"}'))).toBeUndefined();
    expect(v.counters).toEqual({ accepted: 0, badTag: 2, replayed: 0, malformed: 2, otherCluster: 1 });
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
