import type { Reporter } from '../progress.js';
import { runTool } from '../tools/run.js';
import { formatBytes } from './safety.js';

/** One disk `pi-image flash --list` shows. */
export interface Candidate {
  path: string;
  size: number;
  model: string | null;
  removable: boolean;
  /** Mount points of the disk and its partitions. */
  mounted: string[];
  /** File-system labels of the disk and its partitions. */
  labels: string[];
  type: string;
  /** Holds the running system: never written. */
  system: boolean;
}

interface LsblkNode {
  name?: string;
  path?: string;
  size?: number | string | null;
  model?: string | null;
  rm?: boolean | string | number | null;
  mountpoints?: (string | null)[] | null;
  mountpoint?: string | null;
  label?: string | null;
  type?: string;
  pkname?: string | null;
  children?: LsblkNode[];
}

export const LSBLK_ARGS = ['--json', '-b', '-o', 'NAME,PATH,SIZE,MODEL,RM,MOUNTPOINTS,LABEL,TYPE,PKNAME'];

/** Disks (and loop devices) from `lsblk --json` output, with what sits on each. Pure. */
export function candidatesFromLsblk(json: string, systemPaths: ReadonlySet<string> = new Set()): Candidate[] {
  const doc = JSON.parse(json) as { blockdevices?: LsblkNode[] };
  const out: Candidate[] = [];
  const walk = (node: LsblkNode, acc: { mounted: string[]; labels: string[]; paths: string[] }) => {
    for (const m of node.mountpoints ?? (node.mountpoint !== undefined ? [node.mountpoint] : [])) if (m) acc.mounted.push(m);
    if (node.label) acc.labels.push(node.label);
    if (node.path) acc.paths.push(node.path);
    for (const child of node.children ?? []) walk(child, acc);
  };
  for (const node of doc.blockdevices ?? []) {
    if (node.type !== 'disk' && node.type !== 'loop') continue;
    const size = Number(node.size ?? 0);
    if (!size) continue; // empty loop devices, zram not set up, card readers without a card
    const acc = { mounted: [] as string[], labels: [] as string[], paths: [] as string[] };
    walk(node, acc);
    const rm = node.rm;
    out.push({
      path: node.path ?? `/dev/${node.name}`,
      size,
      model: node.model?.trim() || null,
      removable: rm === true || rm === '1' || rm === 1,
      mounted: acc.mounted,
      labels: acc.labels,
      type: node.type,
      system: acc.mounted.includes('/') || acc.paths.some((p) => systemPaths.has(p)),
    });
  }
  return out;
}

export async function listCandidates(reporter: Reporter, systemPaths?: ReadonlySet<string>): Promise<Candidate[]> {
  return candidatesFromLsblk(await runTool('lsblk', LSBLK_ARGS, { stage: 'list', reporter }), systemPaths);
}

export function formatCandidates(list: readonly Candidate[]): string {
  if (!list.length) return 'no disks found\n';
  const rows = list.map((c) => [
    c.path,
    formatBytes(c.size),
    c.model ?? '-',
    c.removable ? 'yes' : 'no',
    c.system ? 'SYSTEM' : c.mounted.length ? c.mounted.join(',') : '-',
    c.labels.join(',') || '-',
  ]);
  const header = ['PATH', 'SIZE', 'MODEL', 'REMOVABLE', 'MOUNTED', 'LABELS'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  return [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()).join('\n') + '\n';
}
