import { describe, expect, it } from 'vitest';
import { applyEvent, engineServes, initialState, reconcile, settled } from '../../../../src/node/agent/controller.js';
import { ClusterSim } from './cluster-sim.js';

/** Every order of a list. */
const orders = <T>(xs: T[]): T[][] => (xs.length <= 1 ? [xs] : xs.flatMap((x, i) => orders([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest])));

function threeNodes(opts: Parameters<ClusterSim['add']>[1][] = []): ClusterSim {
  const sim = new ClusterSim(3);
  ['n1', 'n2', 'n3'].forEach((id, i) => sim.add(id, opts[i]));
  return sim;
}

/** Boots nodes in order, each after the LAN went quiet, then lets repeats run out. */
function bootAll(sim: ClusterSim, ids: string[]): void {
  for (const id of ids) {
    sim.boot(id);
    sim.run();
  }
  sim.repeat(3);
}

describe('cluster assembly, driven through the controller', () => {
  for (const order of orders(['n1', 'n2', 'n3'])) {
    it(`boot order ${order.join(' → ')}: n1 is root, n2 and n3 serve with it`, () => {
      const sim = threeNodes();
      bootAll(sim, order);
      expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
      expect(sim.live().every((n) => !n.eager)).toBe(true);
      // The firewall holds exactly the other members.
      expect(sim.node('n2').firewall).toEqual(['10.9.0.2', '10.9.0.4']);
    });
  }

  it('nodes minutes apart: the first waits undecided, starts nothing and keeps repeating', () => {
    const sim = threeNodes();
    sim.boot('n3');
    sim.repeat(10);
    expect(sim.node('n3').state.role).toBe('undecided');
    expect(sim.node('n3').engineStarts).toBe(0);
    expect(sim.node('n3').eager).toBe(true);
    sim.boot('n2');
    sim.repeat(10);
    expect(sim.roots()).toEqual([]);
    sim.boot('n1');
    sim.run();
    sim.repeat(2);
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
  });

  it('a cluster that never reaches its size stays undecided and runs no engine', () => {
    const sim = new ClusterSim(4);
    ['n1', 'n2', 'n3'].forEach((id) => sim.add(id));
    bootAll(sim, ['n1', 'n2', 'n3']);
    expect(sim.live().map((n) => n.state.role)).toEqual(['undecided', 'undecided', 'undecided']);
    expect(sim.live().map((n) => n.engineStarts)).toEqual([0, 0, 0]);
    expect(sim.live().every((n) => n.eager)).toBe(true);
  });

  it('a late fourth node joins the existing root as a worker; the serving engine is not restarted', () => {
    const sim = threeNodes();
    sim.add('n0');
    bootAll(sim, ['n1', 'n2', 'n3']);
    const starts = sim.node('n1').engineStarts;
    sim.boot('n0');
    sim.run();
    sim.repeat(3);
    expect(sim.node('n0').state).toMatchObject({ role: 'worker', root: 'n1' });
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
    expect(sim.node('n1').engineStarts).toBe(starts);
  });

  it('a worker reboot: the root restarts its engine with the worker\'s new boot, no input', () => {
    const sim = threeNodes();
    bootAll(sim, ['n1', 'n2', 'n3']);
    const starts = sim.node('n1').engineStarts;
    sim.powerOff('n3');
    sim.boot('n3');
    sim.run();
    sim.repeat(2);
    expect(sim.node('n3').state).toMatchObject({ role: 'worker', root: 'n1' });
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
    expect(sim.node('n1').state.workers.find((w) => w.node === 'n3')?.boot).toBe('n3.2');
    expect(sim.node('n1').engineStarts).toBe(starts + 1);
    // Its launch line is the same as before, but the engine must really restart: the running one talks to a worker that is gone.
    expect(sim.node('n1').starts.at(-1)).toEqual({ as: 'root', adopt: false });
  });

  it("a worker's agent restart: its engine server keeps running, the root's engine is not restarted and names the new agent", () => {
    const sim = threeNodes();
    bootAll(sim, ['n1', 'n2', 'n3']);
    const rootStarts = sim.node('n1').engineStarts;
    sim.restartAgent('n3');
    sim.run();
    sim.repeat(3);
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
    expect(sim.node('n1').engineStarts).toBe(rootStarts);
    expect(engineServes(sim.node('n1').state)).toBe(true);
    expect(sim.node('n1').state.workers.find((w) => w.node === 'n3')?.boot).toBe('n3.1.2');
    // The new agent's first start keeps the engine server that still runs with the same launch line.
    expect(sim.node('n3').starts.at(-1)).toEqual({ as: 'worker', adopt: true });
    expect(sim.live().every((n) => !n.eager)).toBe(true);
  });

  it("a root's agent restart: the workers start nothing, the root keeps its running engine", () => {
    const sim = threeNodes();
    bootAll(sim, ['n1', 'n2', 'n3']);
    const workerStarts = ['n2', 'n3'].map((id) => sim.node(id).engineStarts);
    sim.restartAgent('n1');
    sim.run();
    sim.repeat(3);
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
    expect(['n2', 'n3'].map((id) => sim.node(id).engineStarts)).toEqual(workerStarts);
    expect(sim.node('n1').starts.at(-1)).toEqual({ as: 'root', adopt: true });
    expect(sim.node('n1').engine?.run).toBe('n1-run1');
  });

  it("a worker's engine server that restarts (an update held and released it) makes the root restart its engine, which lost that server's connection", () => {
    const sim = threeNodes();
    bootAll(sim, ['n1', 'n2', 'n3']);
    expect(engineServes(sim.node('n1').state)).toBe(true);
    sim.tell('n3', { on: 'runtime', version: '', held: 'update u1 switching the runtime' });
    // Its engine still says ready, but one of the servers it runs with is gone: not serving (health, updates).
    expect(sim.node('n1').state.engine.state).toBe('ready');
    expect(engineServes(sim.node('n1').state)).toBe(false);
    sim.tell('n3', { on: 'runtime', version: '' });
    sim.repeat(3);
    expect(engineServes(sim.node('n1').state)).toBe(true);
    expect(sim.node('n3').engine?.run).toBe('n3-run2');
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
    expect(sim.node('n1').engine?.run).toBe('n1-run2');
    expect(sim.node('n1').state.workers.find((w) => w.node === 'n3')?.engineRun).toBe('n3-run2');
  });

  it("a root's agent away while a worker's engine server restarts: the new agent does not keep the engine that talked to the old server", () => {
    const sim = threeNodes();
    bootAll(sim, ['n1', 'n2', 'n3']);
    sim.restartAgent('n1', () => {
      sim.tell('n3', { on: 'runtime', version: '', held: 'update u1 rolling back' });
      sim.tell('n3', { on: 'runtime', version: '' });
    });
    sim.run();
    sim.repeat(3);
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
    expect(sim.node('n1').starts.at(-1)).toEqual({ as: 'root', adopt: true });
    expect(sim.node('n1').engine).toEqual({ run: 'n1-run2', with: expect.stringContaining('/n3-run2') });
  });

  it('a root reboot: it stays root (persisted), the workers wait for it instead of electing another', () => {
    const sim = threeNodes();
    bootAll(sim, ['n1', 'n2', 'n3']);
    sim.powerOff('n1');
    sim.boot('n1');
    expect(sim.node('n1').state.role).toBe('root');
    sim.run();
    sim.repeat(2);
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
  });

  it('all nodes off, the workers booted first: they keep following the root they persisted', () => {
    const sim = threeNodes();
    bootAll(sim, ['n1', 'n2', 'n3']);
    for (const id of ['n1', 'n2', 'n3']) sim.powerOff(id);
    sim.boot('n3');
    sim.boot('n2');
    sim.repeat(5);
    expect(sim.roots()).toEqual([]);
    expect(sim.node('n2').state).toMatchObject({ role: 'worker', root: 'n1' });
    sim.boot('n1');
    sim.run();
    sim.repeat(2);
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
  });

  it('a re-flashed root (same board, nothing persisted) takes the root role back from the workers\' claims', () => {
    const sim = threeNodes();
    bootAll(sim, ['n2', 'n3', 'n1']);
    sim.powerOff('n1');
    sim.reflash('n1');
    sim.boot('n1');
    expect(sim.node('n1').state.role).toBe('undecided');
    sim.run();
    sim.repeat(2);
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
  });

  it('an intruder with the wrong secret is never heard: not a member, not in any firewall, no root change', () => {
    const sim = threeNodes();
    sim.add('n0', { secret: 'another-secret-entirely-0000' });
    sim.boot('n0');
    bootAll(sim, ['n1', 'n2', 'n3']);
    sim.repeat(3);
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
    const intruder = sim.node('n0');
    for (const id of ['n1', 'n2', 'n3']) {
      expect(Object.keys(sim.node(id).state.peers)).not.toContain('n0');
      expect(sim.node(id).firewall).not.toContain(intruder.address);
      expect(sim.node(id).counters.badTag).toBeGreaterThan(0);
    }
    expect(intruder.state.role).toBe('undecided');
  });

  it('replayed datagrams of an earlier boot are never acted on after a node restarts (security finding 1)', () => {
    const sim = threeNodes();
    bootAll(sim, ['n1', 'n2', 'n3']);
    // Someone on the LAN recorded everything the root said, then n2 restarts.
    const recorded = [...sim.node('n1').sent];
    sim.powerOff('n1');
    sim.powerOff('n2');
    sim.boot('n2');
    sim.run();
    const before = sim.node('n2').state;
    for (const d of recorded) sim.inject(d, sim.node('n1').address);
    sim.run();
    expect(sim.node('n2').state.peers.n1).toBeUndefined();
    expect(sim.node('n2').state.root).toBe(before.root);
    expect(sim.node('n2').counters.unproven).toBeGreaterThan(0);
    // The real root comes back and is heard at once: the replays did not block it.
    sim.boot('n1');
    sim.run();
    sim.repeat(3);
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
  });

  it('firewalls admit only the nodes an engine works with: a worker its root and fellow workers, a root its workers', () => {
    const sim = new ClusterSim(3);
    for (const id of ['n1', 'n2', 'n3', 'n4']) sim.add(id);
    bootAll(sim, ['n1', 'n2', 'n3', 'n4']);
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
    expect(sim.node('n1').firewall).toEqual(['10.9.0.3', '10.9.0.4']);
    expect(sim.node('n2').firewall).toEqual(['10.9.0.2', '10.9.0.4']);
    // The spare fourth node follows the root but the root does not run with it: nobody admits it.
    for (const id of ['n1', 'n2', 'n3']) expect(sim.node(id).firewall).not.toContain('10.9.0.5');
  });

  it('a node that stops says so and drops out of every firewall; when it comes back it is admitted again (security finding 4)', () => {
    const sim = threeNodes();
    bootAll(sim, ['n1', 'n2', 'n3']);
    sim.shutDown('n3');
    sim.repeat(2);
    expect(sim.node('n2').firewall).toEqual(['10.9.0.2']);
    expect(sim.node('n1').state.peers.n3).toBeUndefined();
    sim.boot('n3');
    sim.run();
    sim.repeat(3);
    expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
    expect(sim.node('n2').firewall).toEqual(['10.9.0.2', '10.9.0.4']);
  });

  describe('when the root dies (failover)', () => {
    it('the workers wait the grace period, then elect the lowest remaining id and serve with one node fewer; the old root comes back as a worker', () => {
      const sim = threeNodes();
      bootAll(sim, ['n1', 'n2', 'n3']);
      sim.powerOff('n1');
      sim.keepaliveExpires();
      sim.repeat(5);
      // Within the grace period nothing changes: n1 may only be rebooting.
      expect(sim.node('n2').state).toMatchObject({ role: 'worker', root: 'n1', term: 0, grace: 'n1' });
      expect(sim.roots()).toEqual([]);
      sim.graceExpires();
      sim.repeat(3);
      expect(sim.serving(1)).toEqual({ root: 'n2', workers: ['n3'] });
      expect(sim.node('n3').state).toMatchObject({ role: 'worker', root: 'n2', term: 1 });
      // n3's server may still hold the dead root's connection: restarted for the new root, not kept.
      expect(sim.node('n3').starts.at(-1)).toEqual({ as: 'worker', adopt: false });
      expect(sim.node('n2').card.persisted).toEqual({ role: 'root', root: 'n2', term: 1 });
      // The old root returns with its persisted claim of term 0: it joins the new root.
      sim.boot('n1');
      sim.run();
      sim.repeat(3);
      expect(sim.roots()).toEqual(['n2']);
      expect(sim.node('n1').state).toMatchObject({ role: 'worker', root: 'n2', term: 1 });
      expect(sim.serving()).toEqual({ root: 'n2', workers: ['n1', 'n3'] });
    });

    it('a root back within the grace period keeps its role: no new term, no election', () => {
      const sim = threeNodes();
      bootAll(sim, ['n1', 'n2', 'n3']);
      sim.powerOff('n1');
      sim.keepaliveExpires();
      sim.repeat(2);
      sim.boot('n1');
      sim.run();
      sim.repeat(3);
      expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
      for (const id of ['n2', 'n3']) expect(sim.node(id).state).toMatchObject({ term: 0, grace: undefined });
      // Same root, same address, but its machine rebooted: each worker's RPC server may still hold the
      // dead root's connection (a power cut sends no FIN), so it is restarted, not kept.
      for (const id of ['n2', 'n3']) expect(sim.node(id).starts.at(-1)).toEqual({ as: 'worker', adopt: false });
      // Its grace timers were cancelled: expiring them now changes nothing.
      sim.graceExpires();
      expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3'] });
    });

    it('one worker giving up is enough: the others follow the new term at once', () => {
      const sim = threeNodes();
      bootAll(sim, ['n1', 'n2', 'n3']);
      sim.shutDown('n1');
      const n3 = sim.node('n3');
      expect(n3.grace).toBe('n1');
      sim.expireGraceOf('n3');
      sim.repeat(3);
      expect(sim.serving(1)).toEqual({ root: 'n2', workers: ['n3'] });
      expect(sim.node('n2').state.term).toBe(1);
    });

    it('dllama: a cluster of 4 that loses its root goes on as 2 (a power of two), the third node waits', () => {
      const sim = new ClusterSim(4, 'dllama');
      for (const id of ['n1', 'n2', 'n3', 'n4']) sim.add(id);
      bootAll(sim, ['n1', 'n2', 'n3', 'n4']);
      expect(sim.serving()).toEqual({ root: 'n1', workers: ['n2', 'n3', 'n4'] });
      sim.powerOff('n1');
      sim.keepaliveExpires();
      sim.graceExpires();
      sim.repeat(3);
      expect(sim.serving(1)).toEqual({ root: 'n2', workers: ['n3'] });
      expect(sim.node('n4').state).toMatchObject({ role: 'worker', root: 'n2', engine: { state: 'ready' } });
    });

    it('a worker that boots while the root is off gives it up after the grace period too', () => {
      const sim = threeNodes();
      bootAll(sim, ['n1', 'n2', 'n3']);
      for (const id of ['n1', 'n2', 'n3']) sim.powerOff(id);
      sim.boot('n2');
      sim.boot('n3');
      sim.run();
      sim.repeat(2);
      expect(sim.roots()).toEqual([]);
      sim.graceExpires();
      sim.repeat(3);
      expect(sim.serving(1)).toEqual({ root: 'n2', workers: ['n3'] });
    });
  });

  it('a node that cannot hold the model is never elected, even with the lowest id', () => {
    const sim = threeNodes([{ canHoldModel: false }]);
    bootAll(sim, ['n1', 'n2', 'n3']);
    expect(sim.serving()).toEqual({ root: 'n2', workers: ['n1', 'n3'] });
  });

  it('a node built as root is root whatever its id and the boot order', () => {
    for (const order of orders(['n1', 'n2', 'n3'])) {
      const sim = threeNodes([{}, {}, { configured: 'root' }]);
      bootAll(sim, order);
      expect(sim.serving()).toEqual({ root: 'n3', workers: ['n1', 'n2'] });
    }
  });

  it('with a configured root, the others join it at once without waiting for the cluster size', () => {
    const sim = threeNodes([{}, {}, { configured: 'root' }]);
    sim.boot('n3');
    sim.boot('n1');
    sim.run();
    expect(sim.node('n1').state).toMatchObject({ role: 'worker', root: 'n3' });
    expect(sim.serving()).toBeUndefined();
  });

  it('nodes built as workers never take the root role', () => {
    const sim = new ClusterSim(2);
    sim.add('n1', { configured: 'worker' });
    sim.add('n2', { configured: 'worker' });
    bootAll(sim, ['n1', 'n2']);
    expect(sim.roots()).toEqual([]);
  });

  it('a worker whose engine never becomes ready keeps the cluster from serving and keeps trying', () => {
    const sim = threeNodes([{}, {}, { engineFails: true }]);
    bootAll(sim, ['n1', 'n2', 'n3']);
    expect(sim.serving()).toBeUndefined();
    expect(sim.node('n1').state.engine.detail).toBe('waiting for 2 workers');
    expect(sim.node('n3').engineStarts).toBeGreaterThan(1);
    expect(sim.node('n3').eager).toBe(true);
  });

  it('a cluster of one serves alone', () => {
    const sim = new ClusterSim(1);
    sim.add('n1');
    bootAll(sim, ['n1']);
    expect(sim.serving()).toEqual({ root: 'n1', workers: [] });
  });
});

describe('controller passes', () => {
  const settings = {
    cluster: { name: 'c', size: 2, apiPort: 8080, discoveryPort: 47474, failoverGraceSeconds: 120, corsOrigins: [] },
    role: 'auto' as const,
    engine: { name: 'llama.cpp' as const, binDir: '/opt/pi-image/runtime/current', contextLength: 4096 },
    model: null,
    user: { name: 'pi' },
  };

  it('a root without a model serves the API and says why its engine does not start', () => {
    const state = initialState({ node: 'a', boot: 'a#1', hostname: 'c-a', settings: { ...settings, role: 'root' }, canHoldModel: false, addresses: ['10.0.0.2'] });
    const { state: next, actions } = reconcile(state);
    expect(actions.map((a) => a.do)).toEqual(['log', 'persist-role', 'firewall', 'serve-api', 'publish-name', 'eager', 'announce']);
    expect(next.engine.detail).toBe('this image has no model (build with --model)');
    expect(settled(next)).toBe(false);
  });

  it('a settled pass does nothing but keep quiet', () => {
    const state = initialState({ node: 'a', boot: 'a#1', hostname: 'c-a', settings: { ...settings, cluster: { ...settings.cluster, size: 1 } }, canHoldModel: true, addresses: ['10.0.0.2'] });
    const first = reconcile(state);
    expect(first.actions.map((a) => a.do)).toEqual(['log', 'persist-role', 'firewall', 'serve-api', 'publish-name', 'start-root', 'eager', 'announce']);
    const ready = applyEvent(first.state, { on: 'engine', generation: first.state.engine.generation, state: 'ready' });
    const { state: after, actions } = reconcile(ready);
    expect(actions).toEqual([{ do: 'publish-name' }, { do: 'eager', on: false }, { do: 'announce' }]);
    expect(reconcile(after).actions).toEqual([{ do: 'publish-name' }, { do: 'eager', on: false }]);
    // A readiness report of a superseded start changes nothing.
    expect(applyEvent(after, { on: 'engine', generation: 0, state: 'failed' })).toBe(after);
  });

  /** A one-node dllama cluster whose engine serves. */
  const servingAlone = (runtime?: string) => {
    const dllama = { ...settings, cluster: { ...settings.cluster, size: 1 }, engine: { ...settings.engine, name: 'dllama' as const, contextLength: 256 } };
    const first = reconcile(initialState({ node: 'a', boot: 'a#1', hostname: 'c-a', settings: dllama, canHoldModel: true, addresses: ['10.0.0.2'], ...(runtime ? { runtime } : {}) }));
    return reconcile(applyEvent(first.state, { on: 'engine', generation: first.state.engine.generation, state: 'ready' })).state;
  };

  it('an engine that crashes while it serves is counted, reported with what killed it, and started again in the next pass', () => {
    const serving = servingAlone();
    const crashed = applyEvent(serving, { on: 'engine-crashed', generation: serving.engine.generation, what: 'dumped core on signal SEGV', at: '2026-11-23T10:00:00Z' });
    expect(crashed.engine).toMatchObject({ state: 'failed', detail: 'crashed: dumped core on signal SEGV at 2026-11-23T10:00:00Z' });
    expect(crashed.crashes).toEqual({ count: 1, last: 'dumped core on signal SEGV at 2026-11-23T10:00:00Z' });
    const { state: again, actions } = reconcile(crashed);
    expect(actions).toContainEqual(expect.objectContaining({ do: 'start-root', generation: serving.engine.generation + 1, adopt: false }));
    expect(again.engine.state).toBe('starting');
    expect(again.crashes.count).toBe(1);
    // The exit of a run that a newer start replaced is not a crash of the running one.
    expect(applyEvent(again, { on: 'engine-crashed', generation: serving.engine.generation, what: 'killed by signal TERM', at: 'x' })).toBe(again);
  });

  it('an update switching the runtime holds the engine stopped, then starts it again on the new runtime; the same runtime is not restarted', () => {
    const serving = servingAlone('0.16.3');
    const held = reconcile(applyEvent(serving, { on: 'runtime', version: '0.16.3', held: 'update u1 switching the runtime' }));
    expect(held.actions.map((a) => a.do)).toContain('stop-engine');
    expect(held.actions.map((a) => a.do)).not.toContain('start-root');
    expect(held.state.engine).toMatchObject({ state: 'stopped', detail: 'update u1 switching the runtime' });
    expect(reconcile(held.state).actions.map((a) => a.do)).not.toContain('start-root');
    const released = reconcile(applyEvent(held.state, { on: 'runtime', version: '0.16.4' }));
    expect(released.actions).toContainEqual(expect.objectContaining({ do: 'start-root', adopt: false }));
    expect(released.state.engine.key).toMatch(/#0\.16\.4$/);
    const ready = reconcile(applyEvent(released.state, { on: 'engine', generation: released.state.engine.generation, state: 'ready' })).state;
    expect(reconcile(applyEvent(ready, { on: 'runtime', version: '0.16.4' })).actions.map((a) => a.do)).not.toContain('start-root');
  });
});
