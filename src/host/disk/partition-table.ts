import type { Reporter } from '../progress.js';
import { runTool } from '../tools/run.js';
import { sfdiskScript, type DiskLayout } from './layout.js';

export interface PartitionTableEntry {
  node: string;
  start: number;
  size: number;
  type: string;
  bootable?: boolean;
}

export interface PartitionTable {
  label: string;
  id: string;
  unit: string;
  sectorsize?: number;
  partitions: PartitionTableEntry[];
}

export async function writePartitionTable(image: string, layout: DiskLayout, reporter: Reporter): Promise<void> {
  await runTool('sfdisk', ['--no-reread', '--no-tell-kernel', '--wipe=never', image], {
    stage: 'disk',
    reporter,
    input: sfdiskScript(layout),
  });
}

export async function readPartitionTable(image: string, reporter: Reporter): Promise<PartitionTable> {
  const out = await runTool('sfdisk', ['--json', image], { stage: 'disk', reporter });
  return (JSON.parse(out) as { partitiontable: PartitionTable }).partitiontable;
}
