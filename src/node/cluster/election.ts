import type { Announcement } from '../../shared/discovery-protocol.js';

export interface ElectionView {
  self: Pick<Announcement, 'node' | 'configured' | 'root' | 'canHoldModel'>;
  peers: Pick<Announcement, 'node' | 'configured' | 'root' | 'canHoldModel'>[];
}

const lowest = (ids: string[]) => [...ids].sort()[0];

/**
 * Who is root, computed the same way by every node from what it has heard:
 * 1. an explicitly configured root wins (the lowest id, should there be two);
 * 2. else a root some node already follows or is (roots stay root across reboots, so a node
 *    booting later, even with a lower id, never takes over);
 * 3. else the lowest node id among the nodes able to hold the model.
 * Undefined when no node can be root yet.
 */
export function electRoot(view: ElectionView): string | undefined {
  const all = [view.self, ...view.peers];
  const explicit = all.filter((n) => n.configured === 'root').map((n) => n.node);
  if (explicit.length) return lowest(explicit);
  const known = new Set(all.map((n) => n.node));
  const claimed = all.map((n) => n.root).filter((r): r is string => r !== undefined && known.has(r));
  if (claimed.length) return lowest(claimed);
  const candidates = all.filter((n) => n.canHoldModel && n.configured !== 'worker').map((n) => n.node);
  return candidates.length ? lowest(candidates) : undefined;
}
