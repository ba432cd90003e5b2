import type { Announcement } from '../../shared/discovery-protocol.js';

export type Role = Announcement['role'];

/** What a node knows when it decides: itself and the authenticated peers it has heard. */
export interface ClusterView {
  self: Announcement;
  peers: Announcement[];
  size: number;
}

type Candidate = Pick<Announcement, 'node' | 'configured' | 'root' | 'canHoldModel' | 'term'>;

const lowest = (ids: string[]) => [...ids].sort()[0];

/** The failover term a node is at: the highest it has heard (its own included). */
export const currentTerm = (view: Pick<ClusterView, 'self' | 'peers'>) => Math.max(...[view.self, ...view.peers].map((n) => n.term ?? 0));

/**
 * The rule that picks the root. Every node applies it to what it has heard, so all nodes
 * reach the same answer whatever the order they booted in:
 *
 * 1. A node built as root (`--role root`) is root; should there be two, the lowest node id.
 *    A node built as worker is never root.
 * 2. Only the claims of the highest failover term count (term 0 until a root is given up
 *    for lost; see below). A root that some node of that term already is or follows stays
 *    root (roles are persisted across reboots and re-flashes, so a node booting later, even
 *    with a lower id, never takes over). Should claims differ, the lowest claimed id that
 *    has been heard.
 * 3. Otherwise the lowest node id among those that hold the model: in term 0 once `size`
 *    nodes have been heard (the first assembly waits for the whole cluster); in a later term
 *    among the nodes heard (the cluster goes on with the nodes it has).
 *
 * While no root can be named yet the node stays undecided. A node whose root has not been
 * heard (it may be rebooting) keeps the role it had, so a reboot never splits the cluster;
 * when the root stays away longer than the grace period, the node moves to the next term
 * with no root (`controller.ts`), and rule 3 elects one among the nodes still there. A root
 * that comes back after that finds a higher term and joins as a worker.
 */
export function decideRole(view: ClusterView): { role: Role; root?: string } {
  const { self, peers } = view;
  if (self.configured === 'root') return { role: 'root', root: self.node };
  const all: Candidate[] = [self, ...peers];
  const term = currentTerm(view);
  const current = all.filter((n) => (n.term ?? 0) === term);
  const known = new Set(all.map((n) => n.node));
  const claims = current.map((n) => n.root).filter((r): r is string => r !== undefined);
  const explicit = all.filter((n) => n.configured === 'root').map((n) => n.node);
  if (!explicit.length && claims.length === 0 && term === 0 && all.length < view.size) return { role: 'undecided' };
  if (!explicit.length && claims.length > 0 && !claims.some((c) => known.has(c))) {
    return self.root && (self.term ?? 0) === term ? { role: self.root === self.node ? 'root' : 'worker', root: self.root } : { role: 'undecided' };
  }
  const root = pickRoot(all, claims.filter((c) => known.has(c)), explicit);
  if (root === undefined) return { role: 'undecided' };
  return { role: root === self.node ? 'root' : 'worker', root };
}

function pickRoot(all: Candidate[], claimed: string[], explicit: string[]): string | undefined {
  if (explicit.length) return lowest(explicit);
  if (claimed.length) return lowest(claimed);
  return lowest(all.filter((n) => n.canHoldModel && n.configured !== 'worker').map((n) => n.node));
}
