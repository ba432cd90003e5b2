import type { TuningState } from '../shared/tuning/levers.js';
import type { Check, Status } from '../shared/tuning/kind.js';
import { checkLever } from '../shared/tuning/kinds/index.js';
import type { NodeSystem } from '../shared/tuning/system.js';
import { nodeSystem } from './node-system.js';
import type { NodeSettings } from '../shared/node-settings.js';
import { ENGINE_UNIT } from '../shared/node-paths.js';

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

export interface EngineMemoryReport {
  status: 'ok' | 'over' | 'n/a';
  role?: 'root' | 'worker';
  residentMib?: number;
  budgetMib?: number;
  reason?: string;
}

/** Commands of the engine's root process; any other engine process is a worker. */
const ROOT_COMMANDS = ['llama-server', 'dllama-api'];

/** The engine's resident size against the budget the build computed for its role. */
export async function engineMemory(budget: NodeSettings['engineMemoryMib'], sys: NodeSystem = nodeSystem): Promise<EngineMemoryReport> {
  if (!budget) return { status: 'n/a', reason: 'the build computed no budget (no model, or its header did not tell its shape)' };
  const pid = (await sys.run('systemctl', ['show', '-p', 'MainPID', '--value', ENGINE_UNIT])).stdout.trim();
  if (!pid || pid === '0') return { status: 'n/a', reason: 'the engine is not running' };
  const status = await sys.readText(`/proc/${pid}/status`);
  const command = /^Name:\s*(\S+)/m.exec(status ?? '')?.[1];
  const rssKib = Number(/^VmRSS:\s*(\d+) kB/m.exec(status ?? '')?.[1]);
  if (!command || !Number.isFinite(rssKib)) return { status: 'n/a', reason: `cannot read /proc/${pid}/status` };
  const role = ROOT_COMMANDS.includes(command) ? 'root' : 'worker';
  const budgetMib = budget[role] ?? budget.root;
  const residentMib = Math.ceil(rssKib / 1024);
  return { status: residentMib > budgetMib ? 'over' : 'ok', role, residentMib, budgetMib };
}

export function formatEngineMemory(r: EngineMemoryReport): string {
  if (r.status === 'n/a') return `n/a      engine memory    (${r.reason})\n`;
  return `${r.status.padEnd(8)} engine memory    the ${r.role}'s engine holds ${r.residentMib} MiB of its ${r.budgetMib} MiB budget${r.status === 'over' ? ': this node may swap (see the plan\'s memory line)' : ''}\n`;
}
