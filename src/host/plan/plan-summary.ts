import { join } from 'node:path';
import type { NodeMemory } from './memory-budget.js';
import type { Plan } from './plan.js';

const MIB = 1024 * 1024;

/**
 * The plan as a person reads it, one line per part (as `mkosi summary` does): what is built
 * from what, and the warnings. `--print-plan --json` gives the whole plan.
 */
export function planSummary(plan: Plan): string {
  const { base, node, engine } = plan;
  const kernel = base.image ? "the base image's own" : base.packages.filter((p) => p.startsWith('linux-image')).join(', ') || 'none';
  const modelFile = node.files.find((f) => node.settings.model && `/${f.target}` === node.settings.model.path);
  const levers = plan.tuning.levers.filter((l) => l.onBoard);
  const off = levers.filter((l) => !l.enabled).map((l) => l.id);
  const keys = node.authorizedKeys.split('\n').filter(Boolean).length;
  const rows: [string, string][] = [
    ['board', `${plan.board.name} (${plan.board.arch}): ${plan.board.description}`],
    [
      'base',
      base.image
        ? `image ${base.image.source} (sha256 ${base.image.sha256.slice(0, 12)}…), ${base.packages.length} packages added`
        : `Debian ${base.suite} ${base.variant} from ${base.mirrors.join(', ')} (${base.components.join(', ')}), ${base.packages.length} packages`,
    ],
    ['kernel', kernel],
    ['engine', `${engine.name} (${engine.from}), runtime: ${engine.runtime}`],
    ['model', node.settings.model ? `${node.settings.model.name}: ${node.settings.model.path}${modelFile ? ` (${(modelFile.size / MIB).toFixed(1)} MiB)` : ''}` : 'none'],
    [
      'cluster',
      `${node.settings.cluster.name}: ${node.settings.cluster.size} nodes, role ${plan.role}, API port ${node.settings.cluster.apiPort}, failover after ${node.settings.cluster.failoverGraceSeconds} s`,
    ],
    ['memory', memoryLine(node.memory)],
    ['system', `time zone ${plan.system.timezone}, locale ${plan.system.locale}, clock from ${plan.system.ntpServers.length ? plan.system.ntpServers.join(' ') : "Debian's NTP pool"}`],
    ['login', `user ${node.settings.user.name}, ${keys ? `${keys} SSH key(s)` : 'no SSH key'}, no password`],
    ['layers', plan.layers.map((l) => l.name).join(', ')],
    ['tuning', `${plan.tuning.profile}: ${levers.length - off.length} levers on${off.length ? `, off: ${off.join(', ')}` : ''}`],
    ['outputs', `${join(plan.outputs.dir, plan.outputs.img)}, .img.zst, .bmap, ${plan.outputs.sums}, ${plan.outputs.manifest}`],
    ['cache', `base ${plan.cacheKeys.base.slice(0, 12)}, layers ${plan.cacheKeys.layers.slice(0, 12)}`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
  for (const w of plan.warnings) lines.push(`${'warning'.padEnd(width)}  ${w}`);
  return `${lines.join('\n')}\n`;
}

function memoryLine(memory: Plan['node']['memory']): string {
  if (!memory) return 'no budget (no model, or its header does not tell its shape)';
  const one = (n: NodeMemory) => `${n.role} ${n.totalMib} MiB (weights ${n.weightsMib}, KV cache ${n.kvCacheMib}, buffers ${n.buffersMib}, OS ${n.reservedMib})`;
  return `${[memory.root, memory.worker].filter((n): n is NodeMemory => n !== undefined).map(one).join('; ')} of ${memory.ramMib} MiB each`;
}
