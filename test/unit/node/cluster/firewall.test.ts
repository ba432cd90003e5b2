import { describe, expect, it } from 'vitest';
import { memberSetCommands, renderFirewall } from '../../../../src/node/cluster/firewall.js';

/** What a forged or corrupted member list could hold: each would change the meaning of the nft text. */
const HOSTILE_MEMBERS = [
  '10.9.0.3 }\ndelete table inet pi_image',
  '10.9.0.3, 0.0.0.0/0',
  '10.9.0.3; flush ruleset',
  '0.0.0.0/0',
  'node-b.local',
  '::1',
  '10.9.0.256',
  ' 10.9.0.3',
  '',
];

describe('engine-port firewall rules', () => {
  it('renders the members and ports it is given', () => {
    const rules = renderFirewall({ enginePorts: [50052, 8099], members: ['10.9.0.2', '10.9.0.3'] });
    expect(rules).toContain('elements = { 10.9.0.2, 10.9.0.3 }');
    expect(rules).toContain('tcp dport { 50052, 8099 } ip saddr @members accept');
    expect(memberSetCommands(['10.9.0.2'])).toBe('flush set inet pi_image members\nadd element inet pi_image members { 10.9.0.2 }');
    expect(memberSetCommands([])).toBe('flush set inet pi_image members');
  });

  it('keeps connections already admitted before checking the member set (a reload must not cut them)', () => {
    const lines = renderFirewall({ enginePorts: [50052], members: [] }).split('\n').map((l) => l.trim());
    const established = lines.indexOf('ct state established,related accept');
    expect(established).toBeGreaterThan(-1);
    expect(established).toBeLessThan(lines.indexOf('tcp dport { 50052 } ip saddr @members accept'));
  });

  it.each(HOSTILE_MEMBERS)('refuses a member that is not an IPv4 literal: %j', (member) => {
    expect(() => renderFirewall({ enginePorts: [50052], members: ['10.9.0.2', member] })).toThrow(/IPv4/);
    expect(() => memberSetCommands(['10.9.0.2', member])).toThrow(/IPv4/);
  });

  it('refuses a member that is not a string at all', () => {
    expect(() => memberSetCommands([42 as unknown as string])).toThrow(/IPv4/);
  });

  it.each([[[0]], [[65536]], [[50052.5]], [[Number.NaN]], [[-1]], [['50052 } accept' as unknown as number]], [[]]])('refuses engine ports %j', (ports) => {
    expect(() => renderFirewall({ enginePorts: ports, members: [] })).toThrow(/port/);
  });
});
