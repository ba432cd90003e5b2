import { parseCpuList } from '../cpu-list.js';
import { activeLevers, type ResolvedLever } from './levers.js';

/** The engine unit's environment variable that carries its thread count. */
export const ENGINE_THREADS_ENV = 'PI_IMAGE_ENGINE_THREADS';

/** The CPUs a CPUAffinity= value names ("0-2" → 3). */
export const cpuAffinityCount = (cpuAffinity: string) => new Set(parseCpuList(cpuAffinity)).size;

/**
 * Threads for the engine: one per CPU it is pinned to that this machine has (every active
 * lever's CPUAffinity, merged as systemd merges them), else every core but one, which is left
 * to the network. Never more than the cores: dllama refuses to start with more threads.
 */
export function engineThreads(levers: readonly ResolvedLever[], cores: number): number {
  const cpus = new Set(activeLevers(levers).flatMap((l) => parseCpuList(l.apply.engine?.CPUAffinity ?? '')));
  const present = [...cpus].filter((cpu) => cpu < cores).length;
  return present || Math.max(1, cores - 1);
}
