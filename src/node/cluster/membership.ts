import type { Announcement } from '../../shared/discovery-protocol.js';
import { electRoot } from './election.js';

export type Role = Announcement['role'];

/** What this node knows: itself and the authenticated peers it has heard. */
export interface ClusterView {
  self: Announcement;
  peers: Announcement[];
  size: number;
}

/**
 * This node's role from what it has heard. A root, once there is one, is found by the
 * election's rules (configured root, then an existing root); with no root anywhere, nodes
 * wait until the configured cluster size has been heard, so the choice does not depend on
 * which nodes booted first.
 */
export function decideRole(view: ClusterView): { role: Role; root?: string } {
  const { self, peers } = view;
  if (self.configured === 'root') return { role: 'root', root: self.node };
  const all = [self, ...peers];
  const known = new Set(all.map((n) => n.node));
  const claims = all.map((n) => n.root).filter((r): r is string => r !== undefined);
  const explicit = all.some((n) => n.configured === 'root');
  if (!explicit && claims.length === 0 && all.length < view.size) return { role: 'undecided' };
  if (!explicit && claims.length > 0 && !claims.some((c) => known.has(c))) {
    // The root everyone follows has not been heard yet (it may be rebooting): keep what this node was.
    return self.root ? { role: self.root === self.node ? 'root' : 'worker', root: self.root } : { role: 'undecided' };
  }
  const root = electRoot({ self, peers });
  if (root === undefined) return { role: 'undecided' };
  return { role: root === self.node ? 'root' : 'worker', root };
}

/**
 * The workers a root starts its engine with: peers following it whose engine is ready,
 * lowest ids first, as many as the cluster size asks for. Undefined while too few are ready.
 */
export function engineWorkers(view: ClusterView): Announcement[] | undefined {
  const ready = view.peers
    .filter((p) => p.role === 'worker' && p.root === view.self.node && p.engine === 'ready' && p.addresses.length > 0)
    .sort((a, b) => a.node.localeCompare(b.node));
  return ready.length >= view.size - 1 ? ready.slice(0, view.size - 1) : undefined;
}

/** One boot of one node (`node@boot`): how a root's `serving` list names the workers its engine runs with. */
export const nodeBoot = (n: { node: string; boot: string }) => `${n.node}@${n.boot}`;

/** Identifies a worker set: the root restarts its engine when this changes (a worker rebooted, an address changed). */
export const workerSetKey = (workers: Announcement[]) => workers.map((w) => `${nodeBoot(w)}/${w.addresses[0]}`).join(',');
