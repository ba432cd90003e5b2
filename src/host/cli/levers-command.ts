import { Command } from 'commander';
import { loadBoard } from '../catalog/boards.js';
import { loadTuningProfile, resolveLevers } from '../catalog/tuning-profiles.js';
import type { TuningProfile } from '../../shared/tuning/levers.js';
import { describeApply } from '../../shared/tuning/kinds/index.js';
import { silentReporter } from '../progress.js';
import { reportError } from './report-error.js';

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
    .option('--json', 'the levers as JSON: id, default value, purpose, effect, how applied, boards')
    .action(async (options: { board?: string; profile?: string; markdown?: boolean; json?: boolean }) => {
      try {
        const name = options.profile ?? (options.board ? (await loadBoard(options.board)).tuning : 'pi5-inference');
        const profile = await loadTuningProfile(name);
        if (options.json) {
          const levers = defaultLevers(profile, options.board).map((l) => ({ id: l.id, default: l.value ?? true, purpose: l.purpose, effect: l.effect, applied: describeApply(l.apply), apply: l.apply, boards: l.boards }));
          process.stdout.write(`${JSON.stringify({ profile: profile.name, description: profile.description, levers })}\n`);
        } else process.stdout.write(options.markdown ? leversMarkdown(profile, options.board) : leversTable(profile, options.board));
      } catch (e) {
        reportError(e, silentReporter);
        process.exitCode = 1;
      }
    });
}
