import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../../shared/atomic-write.js';
import { CLUSTER_STATE_PATH } from '../../shared/node-paths.js';

/** What the agent keeps across reboots: the role it took and the root it follows or is. */
export interface PersistedRole {
  role: 'root' | 'worker';
  root: string;
  /** The failover term of that root (absent: 0). */
  term?: number;
}

export const readPersistedRole = (path = CLUSTER_STATE_PATH) =>
  readFile(path, 'utf8').then((t) => JSON.parse(t) as PersistedRole, () => undefined);

export const writePersistedRole = (role: PersistedRole, path = CLUSTER_STATE_PATH) => writeFileAtomic(path, `${JSON.stringify(role)}\n`);
