import { describe, expect, it } from 'vitest';
import { createHmac } from 'node:crypto';
import { AnnouncementVerifier, MAX_DATAGRAM, MAX_PEERS, sign, type Announcement } from '../../../../src/shared/discovery-protocol.js';
import { Discovery } from '../../../../src/node/cluster/discovery.js';

const secret = Buffer.from('cluster-secret-0123456789abcdef');
/** The receiver's current boot id: a message acted on must name it. */
const mine = 'boot-r1';
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
  seen: [mine],
};
const total = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0);
/** A datagram with a valid tag around any payload text. */
const tagged = (payload: string, key = secret) => Buffer.from(JSON.stringify({ payload, tag: createHmac('sha256', key).update(payload).digest('hex') }));

describe('discovery announcements', () => {
  it('acts on an authentic announcement once, then only on newer ones of the same boot', () => {
    const v = new AnnouncementVerifier(secret, 'pi', mine);
    const msg = sign(hello, secret);
    expect(v.verify(msg)).toMatchObject({ fresh: 'proven', announcement: { node: 'n-b', addresses: ['10.42.0.3'] } });
    expect(v.verify(msg)).toBeUndefined();
    expect(v.verify(sign({ ...hello, seq: 2 }, secret))).toMatchObject({ fresh: 'proven', announcement: { seq: 2 } });
    expect(v.verify(sign({ ...hello, seq: 2 }, secret))).toBeUndefined();
    expect(v.counters).toMatchObject({ accepted: 2, replayed: 2 });
  });

  it('accepts a restarted node (new boot id) and never again a message of its previous boot', () => {
    const v = new AnnouncementVerifier(secret, 'pi', mine);
    const old = sign({ ...hello, seq: 5 }, secret);
    expect(v.verify(sign({ ...hello, seq: 4 }, secret))).toBeDefined();
    expect(v.verify(sign({ ...hello, boot: 'boot-2', seq: 1 }, secret))).toMatchObject({ announcement: { boot: 'boot-2' } });
    expect(v.verify(old)).toBeUndefined();
    expect(v.counters).toMatchObject({ accepted: 2, replayed: 1 });
  });

  it('finding 1: a message recorded before this boot is never acted on, and does not block the real sender', () => {
    // Recorded by someone on the LAN while the receiver ran as boot-r0 (the sender had heard that boot).
    const recorded = sign({ ...hello, boot: 'boot-0', seq: 9, role: 'root', root: 'n-b', seen: ['boot-r0'] }, secret);
    const v = new AnnouncementVerifier(secret, 'pi', mine); // the receiver restarted: empty memory
    expect(v.verify(recorded)?.fresh).toBe('unproven');
    // The real sender, which has heard this boot, is acted on; the recording never is.
    expect(v.verify(sign({ ...hello, boot: 'boot-1', seq: 1 }, secret))?.fresh).toBe('proven');
    expect(v.verify(recorded)?.fresh).not.toBe('proven');
    expect(v.verify(sign({ ...hello, boot: 'boot-1', seq: 2 }, secret))?.fresh).toBe('proven');
    expect(v.counters.accepted).toBe(2);
  });

  it('finding 1: a superseded boot stays refused after many newer boots of the sender', () => {
    const v = new AnnouncementVerifier(secret, 'pi', mine);
    const first = sign({ ...hello, boot: 'b0', seq: 2 }, secret);
    expect(v.verify(sign({ ...hello, boot: 'b0', seq: 1 }, secret))?.fresh).toBe('proven');
    for (let i = 1; i <= 70; i++) expect(v.verify(sign({ ...hello, boot: `b${i}`, seq: 1 }, secret))?.fresh).toBe('proven');
    expect(v.verify(first)).toBeUndefined();
  });

  it('names the boots it heard in seen, the proven one kept when replays of old boots arrive', () => {
    const v = new AnnouncementVerifier(secret, 'pi', mine);
    v.verify(sign({ ...hello, boot: 'live' }, secret));
    for (let i = 0; i < 10; i++) v.verify(sign({ ...hello, boot: `old${i}`, seen: ['gone'] }, secret));
    expect(v.seenBoots()).toContain('live');
    expect(v.seenBoots().length).toBeLessThanOrEqual(4);
  });

  it('does not depend on the clocks of the nodes agreeing', () => {
    // A node without a time server may be hours off: nothing in the message is a time.
    const payload = JSON.parse(JSON.parse(sign(hello, secret).toString()).payload);
    expect(Object.keys(payload).sort()).toEqual(['addresses', 'boot', 'canHoldModel', 'cluster', 'configured', 'engine', 'hostname', 'node', 'role', 'seen', 'seq', 'v']);
  });

  it('drops and counts a wrong secret, a tampered field, another cluster and garbage', () => {
    const v = new AnnouncementVerifier(secret, 'pi', mine);
    expect(v.verify(sign(hello, Buffer.from('another-secret')))).toBeUndefined();
    const tampered = JSON.parse(sign(hello, secret).toString());
    tampered.payload = tampered.payload.replace('10.42.0.3', '10.42.0.66');
    expect(v.verify(Buffer.from(JSON.stringify(tampered)))).toBeUndefined();
    expect(v.verify(sign({ ...hello, cluster: 'other' }, secret))).toBeUndefined();
    expect(v.verify(Buffer.from('{"v":1'))).toBeUndefined();
    expect(v.verify(Buffer.from('{"payload":1,"tag":"00"}'))).toBeUndefined();
    expect(v.counters).toMatchObject({ accepted: 0, badTag: 2, replayed: 0, malformed: 2, otherCluster: 1 });
  });

  it('finding 2: an authentic announcement whose address is not an IP literal is refused whole', () => {
    const v = new AnnouncementVerifier(secret, 'pi', mine);
    for (const address of ['10.9.0.3 }\ndelete table inet pi_image', 'pi.local', '10.9.0.300', '', '::1']) {
      expect(v.verify(sign({ ...hello, addresses: [address] }, secret))).toBeUndefined();
    }
    expect(v.counters).toMatchObject({ accepted: 0, malformed: 5 });
  });

  it('finding 3: authentic payloads of the wrong shape are counted, never thrown', () => {
    const v = new AnnouncementVerifier(secret, 'pi', mine);
    const shapes = ['null', '1', '"x"', '[]', '{}', JSON.stringify({ ...hello, v: 3, seq: 'x' }), JSON.stringify({ ...hello, v: 3, role: 'king' }), JSON.stringify({ ...hello, v: 3, seen: null }), JSON.stringify({ ...hello, v: 3, node: 'a b' }), JSON.stringify({ ...hello, v: 3, engineRun: 'r; rm -rf /' }), JSON.stringify({ ...hello, v: 3, addresses: Array(9).fill('10.0.0.1') })];
    for (const payload of shapes) expect(() => v.verify(tagged(payload))).not.toThrow();
    expect(v.counters).toMatchObject({ accepted: 0, malformed: shapes.length });
  });

  it('finding 10: large datagrams are dropped unread; the peer table is bounded', () => {
    const v = new AnnouncementVerifier(secret, 'pi', mine);
    expect(v.verify(Buffer.alloc(MAX_DATAGRAM + 1, 32))).toBeUndefined();
    expect(v.counters.flood).toBe(1);
    for (let i = 0; i < MAX_PEERS + 10; i++) v.verify(sign({ ...hello, node: `n${i}` }, secret));
    expect(v.counters.accepted).toBe(MAX_PEERS);
    expect(v.counters.tooMany).toBe(10);
  });

  it('fuzz: thousands of random and mutated datagrams, with and without a valid tag; every one counted once', () => {
    const v = new AnnouncementVerifier(secret, 'pi', mine);
    const random = seeded(42);
    const base = JSON.parse(JSON.parse(sign(hello, secret).toString()).payload);
    const values = [null, true, 0, -1, 1e308, 'x', '', '10.42.0.9', [], {}, ['10.42.0.9'], 'a'.repeat(3000), '\u0000', { __proto__: { v: 3 } }];
    let sent = 0;
    for (let i = 0; i < 5000; i++) {
      const kind = i % 4;
      let datagram: Buffer;
      if (kind === 0) datagram = Buffer.from(Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256)));
      else {
        const m = { ...base, seq: i + 2 } as Record<string, unknown>;
        const keys = Object.keys(m);
        for (let k = 0; k < 1 + Math.floor(random() * 3); k++) {
          const key = random() < 0.2 ? `extra${k}` : (keys[Math.floor(random() * keys.length)] as string);
          if (random() < 0.2) delete m[key];
          else m[key] = values[Math.floor(random() * values.length)];
        }
        const payload = JSON.stringify(m);
        datagram = kind === 1 ? tagged(payload) : kind === 2 ? tagged(payload, Buffer.from('wrong')) : Buffer.from(payload);
      }
      expect(() => v.verify(datagram)).not.toThrow();
      sent++;
    }
    expect(total(v.counters as unknown as Record<string, number>)).toBe(sent);
    expect(v.counters.badTag).toBeGreaterThan(1000);
    expect(v.counters.malformed).toBeGreaterThan(1000);
  });
});

describe('discovery on the LAN', () => {
  const lan = () => [{ address: '10.42.0.2', netmask: '255.255.255.0', broadcast: '10.42.0.255' }];
  function node(opts: { now?: () => number } = {}) {
    const heard: Announcement[] = [];
    const sent: Buffer[] = [];
    const d = new Discovery({
      secret,
      cluster: 'pi',
      port: 47474,
      bootId: mine,
      state: () => ({ cluster: 'pi', node: 'n-a', hostname: 'pi-n-a', configured: 'auto', role: 'undecided', canHoldModel: true, engine: 'stopped' }),
      onPeer: (p) => heard.push(p),
      onLeft: () => undefined,
      shouldAnswer: () => false,
      log: () => undefined,
      lanAddresses: lan,
      now: opts.now ?? (() => 0),
      transmit: (b) => sent.push(b),
    });
    return { d, heard, sent };
  }

  it('finding 3: a datagram that is authentic null never escapes the listener', () => {
    const { d, heard } = node();
    expect(() => d.receive(tagged('null'), '10.42.0.3')).not.toThrow();
    expect(heard).toEqual([]);
    expect(d.counters.malformed).toBe(1);
  });

  it('finding 1: acts only on a sender that came from one of the addresses it signed, on this subnet; others it signed off the subnet are dropped', () => {
    const { d, heard } = node();
    d.receive(sign({ ...hello, addresses: ['10.42.0.3'] }, secret), '10.42.0.99');
    expect(heard).toEqual([]);
    d.receive(sign({ ...hello, seq: 2, addresses: ['192.168.7.3', '10.42.0.3'] }, secret), '10.42.0.3');
    expect(heard.map((p) => p.addresses)).toEqual([['10.42.0.3']]);
  });

  it('answers an unproven sender at most once a second, and does not act on it', () => {
    let now = 0;
    const { d, heard, sent } = node({ now: () => now });
    for (let i = 1; i <= 5; i++) d.receive(sign({ ...hello, seq: i, seen: [] }, secret), '10.42.0.3');
    expect(heard).toEqual([]);
    expect(sent).toHaveLength(1);
    now = 1500;
    d.receive(sign({ ...hello, seq: 6, seen: [] }, secret), '10.42.0.3');
    expect(sent).toHaveLength(2);
    // Our answer names its boot: its next message, naming ours, is acted on.
    expect(JSON.parse(JSON.parse(sent[1]!.toString()).payload).seen).toContain('boot-1');
  });

  it('finding 10: one address cannot make it parse more than a burst plus 10 a second', () => {
    let now = 0;
    const { d } = node({ now: () => now });
    const junk = Buffer.from('{"payload":"x","tag":"' + '0'.repeat(64) + '"}');
    for (let i = 0; i < 20_000; i++) d.receive(junk, '10.42.0.66');
    expect(d.counters.badTag).toBe(20);
    expect(d.counters.flood).toBe(20_000 - 20);
    now = 1000;
    for (let i = 0; i < 100; i++) d.receive(junk, '10.42.0.66');
    expect(d.counters.badTag).toBe(30);
  });

  it('fuzz: random datagrams from many addresses never throw and nothing bad reaches the agent', () => {
    let now = 0;
    const { d, heard } = node({ now: () => (now += 50) });
    const random = seeded(7);
    for (let i = 0; i < 3000; i++) {
      const fields = { ...hello, seq: i + 1, addresses: [random() < 0.5 ? '10.42.0.3' : `10.42.0.${Math.floor(random() * 400)}`], seen: random() < 0.5 ? [mine] : [] };
      const datagram = random() < 0.5 ? sign(fields, secret) : Buffer.from(Array.from({ length: Math.floor(random() * 200) }, () => Math.floor(random() * 256)));
      expect(() => d.receive(datagram, `10.42.0.${1 + Math.floor(random() * 254)}`)).not.toThrow();
    }
    for (const p of heard) for (const a of p.addresses) expect(a).toMatch(/^10\.42\.0\.(\d{1,2}|1\d\d|2[0-4]\d|25[0-5])$/);
  });
});

/** A small deterministic generator (mulberry32), so a failing fuzz run can be repeated. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

