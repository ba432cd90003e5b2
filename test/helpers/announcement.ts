import type { Announcement } from '../../src/shared/discovery-protocol.js';

/** A peer's announcement with plain defaults: undecided, auto, holds the model, engine stopped. */
export const announcement = (id: string, extra: Partial<Announcement> = {}): Announcement => ({
  v: 3,
  cluster: 'pi',
  node: id,
  hostname: `pi-${id}`,
  boot: `${id}-boot`,
  seq: 1,
  addresses: [`10.0.0.${id.charCodeAt(0)}`],
  configured: 'auto',
  role: 'undecided',
  canHoldModel: true,
  engine: 'stopped',
  seen: [],
  ...extra,
});
