/**
 * A cluster update as the root runs it, one persisted phase at a time:
 *
 *   staging ──all staged──▶ switching ──all switched──▶ checking ──healthy──▶ committing ──▶ committed
 *      │                        │                          │
 *      └─any refused──▶ refused └──────any failed──────────┴──▶ rolling-back ──▶ rolled-back
 *
 * Nothing a node runs changes before `switching`, so a refusal leaves every node as it was.
 * The record is written (fsync, rename) before each phase's work starts; after a crash or a
 * power cut the root resumes from the phase on disk with resumeStep(), so every node ends on
 * one version: the old one unless the new one was already being committed.
 */
export type UpdatePhase = 'staging' | 'switching' | 'checking' | 'committing' | 'committed' | 'rolling-back' | 'rolled-back' | 'refused';

export interface UpdateRecord {
  id: string;
  kind: 'runtime' | 'model';
  engine: string;
  version: string;
  /** The version every node ran before: what a rollback returns to. */
  from: string;
  bundle: { sha256: string; size: number };
  /** Every node the update covers, the root first. */
  members: { node: string; address: string }[];
  phase: UpdatePhase;
  started: string;
  ended?: string;
  /** Why it was refused or rolled back. */
  reason?: string;
  /** What each node reported (staged, fetched bytes, errors). */
  nodes: Record<string, { staged?: boolean; fetched?: number; error?: string }>;
  /** Seconds each phase took, for `ota status`. */
  timings: Partial<Record<UpdatePhase, number>>;
}

export const FINAL_PHASES: readonly UpdatePhase[] = ['committed', 'rolled-back', 'refused'];

export const isFinal = (phase: UpdatePhase) => FINAL_PHASES.includes(phase);

/**
 * What an interrupted update does when the root's agent starts again. Staging changed nothing
 * that runs: refuse it. Switching or checking: the new version may run on some nodes and not
 * yet be proven: roll everyone back. Committing: the new version was proven on every node:
 * finish the commit (every node onto it). A rollback that was under way is finished.
 */
export function resumeStep(phase: UpdatePhase): 'refuse' | 'roll-back' | 'commit' | 'none' {
  switch (phase) {
    case 'staging':
      return 'refuse';
    case 'switching':
    case 'checking':
    case 'rolling-back':
      return 'roll-back';
    case 'committing':
      return 'commit';
    default:
      return 'none';
  }
}

/** The phase after one phase's work, from what it produced: every node done, or the first problem. */
export function nextPhase(phase: UpdatePhase, outcome: { ok: true } | { ok: false; reason: string }): UpdatePhase {
  const order: Partial<Record<UpdatePhase, [UpdatePhase, UpdatePhase]>> = {
    staging: ['switching', 'refused'],
    switching: ['checking', 'rolling-back'],
    checking: ['committing', 'rolling-back'],
    committing: ['committed', 'committed'],
    'rolling-back': ['rolled-back', 'rolled-back'],
  };
  const next = order[phase];
  if (!next) throw new Error(`an update in phase ${phase} has ended`);
  return outcome.ok ? next[0] : next[1];
}

/** The version each node must run once the update is where `phase` says. */
export function targetVersion(record: Pick<UpdateRecord, 'phase' | 'version' | 'from'>): string {
  return record.phase === 'committed' || record.phase === 'committing' || record.phase === 'checking' || record.phase === 'switching' ? record.version : record.from;
}
