import type { Announcement } from '../../shared/discovery-protocol.js';
import type { ClusterView } from './roles.js';

/**
 * The workers a root starts its engine with: peers following it whose engine is ready. Those
 * the engine already runs with come first (a node joining later does not restart a serving
 * engine), then the lowest ids. The first assembly (term 0) waits for `size - 1` of them;
 * after a failover the root goes on with what is there, as many as the engine can use
 * (`usableNodes`: llama.cpp any number, dllama a power of two). Undefined while too few are ready.
 */
export function engineWorkers(view: ClusterView, current: Announcement[] = [], usableNodes: (available: number) => number = (n) => n): Announcement[] | undefined {
  const running = new Set(current.map((w) => w.node));
  const ready = view.peers
    .filter((p) => p.role === 'worker' && p.root === view.self.node && p.engine === 'ready' && p.addresses.length > 0 && (p.term ?? 0) === (view.self.term ?? 0))
    .sort((a, b) => Number(running.has(b.node)) - Number(running.has(a.node)) || a.node.localeCompare(b.node));
  const wanted = (view.self.term ?? 0) === 0 ? view.size - 1 : Math.min(view.size, usableNodes(1 + ready.length)) - 1;
  return ready.length >= wanted ? ready.slice(0, wanted).sort((a, b) => a.node.localeCompare(b.node)) : undefined;
}

/** One boot of one node (`node@boot`): how a root's `serving` list names the workers its engine runs with. */
export const nodeBoot = (n: { node: string; boot: string }) => `${n.node}@${n.boot}`;

/**
 * Identifies what a root's engine runs with: it restarts its engine when this changes (a worker
 * rebooted, an address changed, its engine server restarted), not when a worker's agent merely
 * restarted (its engine server kept running, and reloading the model over the network would
 * take minutes).
 */
export const workerSetKey = (workers: Announcement[]) => workers.map((w) => `${w.node}@${w.machineBoot ?? w.boot}/${w.addresses[0]}/${w.engineRun ?? ''}`).join(',');
