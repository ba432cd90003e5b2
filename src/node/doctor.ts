import type { TuningState } from '../shared/tuning/levers.js';
import type { Check, Status } from '../shared/tuning/kind.js';
import { checkLever } from '../shared/tuning/kinds/index.js';
import type { NodeSystem } from '../shared/tuning/system.js';
import { nodeSystem } from './node-system.js';

export interface LeverReport {
  id: string;
  purpose: string;
  status: Status;
  reason?: string;
  checks: Check[];
}

function summarize(checks: Check[]): { status: Status; reason?: string } {
  if (checks.some((c) => c.status === 'drift')) return { status: 'drift' };
  if (checks.length && checks.every((c) => c.status === 'n/a')) return { status: 'n/a', reason: [...new Set(checks.map((c) => c.reason))].join('; ') };
  return { status: 'ok' };
}

export async function runDoctor(state: TuningState, sys: NodeSystem = nodeSystem): Promise<LeverReport[]> {
  const reports: LeverReport[] = [];
  for (const lever of state.levers) {
    if (!lever.enabled) {
      reports.push({ id: lever.id, purpose: lever.purpose, status: 'disabled', reason: 'switched off in pi-image.yaml (tuning:)', checks: [] });
      continue;
    }
    if (!lever.onBoard) {
      reports.push({ id: lever.id, purpose: lever.purpose, status: 'n/a', reason: `for ${lever.boards.join(', ')}; this image is for ${state.board}`, checks: [] });
      continue;
    }
    const checks = await checkLever(lever, { sys, state });
    reports.push({ id: lever.id, purpose: lever.purpose, ...summarize(checks), checks });
  }
  return reports;
}

export function formatDoctor(reports: LeverReport[]): string {
  const lines: string[] = [];
  for (const r of reports) {
    lines.push(`${r.status.padEnd(8)} ${r.id.padEnd(16)} ${r.purpose}${r.reason ? `  (${r.reason})` : ''}`);
    for (const c of r.checks) {
      if (c.status === 'ok' && r.status === 'ok') continue;
      lines.push(`           ${c.status.padEnd(6)} ${c.what}: expected ${c.expected}, actual ${c.actual}${c.reason ? ` (${c.reason})` : ''}`);
    }
  }
  const drift = reports.filter((r) => r.status === 'drift').length;
  lines.push('', drift ? `${drift} lever(s) drifted from the tuning profile` : 'no drift');
  return `${lines.join('\n')}\n`;
}
