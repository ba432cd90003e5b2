import { Command } from 'commander';
import { loadBoard } from '../catalog/boards.js';
import { loadTuningProfile, resolveLevers } from '../catalog/tuning-profiles.js';
import type { LeverApply, TuningProfile } from '../../shared/tuning/levers.js';
import { silentReporter } from '../progress.js';
import { reportError } from './report-error.js';

/** One line saying how a lever is applied, from its apply section. */
export function describeApply(apply: LeverApply): string {
  const parts: string[] = [];
  if (apply.sysctl) parts.push(`sysctl ${Object.entries(apply.sysctl).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  if (apply.modules) parts.push(`modules-load ${apply.modules.join(', ')}`);
  if (apply.governor) parts.push(`governor ${apply.governor} (pi-image-cpu-tuning.service)`);
  if (apply.nic) parts.push(`NIC ${Object.entries(apply.nic).map(([k, v]) => `${k}=${v}`).join(', ')} (pi-image-nic-tuning.service)`);
  if (apply.engine) {
    const e = apply.engine;
    const props = [
      e.CPUAffinity && `CPUAffinity=${e.CPUAffinity}`,
      e.LimitMEMLOCK && `LimitMEMLOCK=${e.LimitMEMLOCK}`,
      e.Nice !== undefined && `Nice=${e.Nice}`,
      ...Object.entries(e.Environment ?? {}).map(([k, v]) => `${k}=${v}`),
    ].filter(Boolean);
    parts.push(`engine unit ${props.join(', ')}`);
  }
  if (apply.eeprom) parts.push(`bootloader EEPROM ${Object.entries(apply.eeprom).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  if (apply.mask_timers) parts.push('masks every timer unit of the base system');
  if (apply.forbid_config_txt) parts.push(`build fails on config.txt keys ${apply.forbid_config_txt.join(', ')}`);
  return parts.join('; ');
}

/** The profile's levers with their default values filled into how they are applied. */
function defaultLevers(profile: TuningProfile, board?: string) {
  return resolveLevers(profile, board ?? 'pi5').filter((l) => !board || l.onBoard);
}

export function leversMarkdown(profile: TuningProfile, board?: string): string {
  const rows = defaultLevers(profile, board);
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  return [
    `Tuning profile \`${profile.name}\`: ${profile.description}.`,
    '',
    '| lever | default | purpose | reported effect | applied by | boards |',
    '|---|---|---|---|---|---|',
    ...rows.map((l) => `| \`${l.id}\` | ${l.value === undefined ? 'on' : `\`${l.value}\``} | ${cell(l.purpose)} | ${cell(l.effect)} | ${cell(describeApply(l.apply))} | ${l.boards.join(', ')} |`),
    '',
  ].join('\n');
}

function leversTable(profile: TuningProfile, board?: string): string {
  const rows = defaultLevers(profile, board);
  const lines = [`${profile.name}: ${profile.description}`, ''];
  for (const l of rows) {
    lines.push(`${l.id.padEnd(16)} ${(l.value === undefined ? 'on' : String(l.value)).padEnd(12)} ${l.purpose}`);
    lines.push(`${''.padEnd(29)} effect: ${l.effect}`);
    lines.push(`${''.padEnd(29)} applied: ${describeApply(l.apply)}`);
    lines.push(`${''.padEnd(29)} boards: ${l.boards.join(', ')}`);
  }
  lines.push('', 'Switch a lever off or change its value in pi-image.yaml, e.g. tuning: { gro_off: false, swappiness: 10 }');
  return `${lines.join('\n')}\n`;
}

export function leversCommand(): Command {
  return new Command('levers')
    .description('Print the tuning profile: every lever, its default, purpose, reported effect, how it is applied and on which boards')
    .option('--board <name>', 'only the levers for this board, from its default profile')
    .option('--profile <name>', 'tuning profile (default: the board’s, else pi5-inference)')
    .option('--markdown', 'a Markdown table (the README’s tuning section is generated from it)')
    .action(async (options: { board?: string; profile?: string; markdown?: boolean }) => {
      try {
        const name = options.profile ?? (options.board ? (await loadBoard(options.board)).tuning : 'pi5-inference');
        const profile = await loadTuningProfile(name);
        process.stdout.write(options.markdown ? leversMarkdown(profile, options.board) : leversTable(profile, options.board));
      } catch (e) {
        reportError(e, silentReporter);
        process.exitCode = 1;
      }
    });
}
