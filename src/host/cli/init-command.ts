import { Command, Option } from 'commander';
import { homedir } from 'node:os';
import { relative, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { QUESTIONS } from '../init/questions.js';
import type { Missing } from '../init/resolve.js';
import { silentReporter } from '../progress.js';
import { reportError } from './report-error.js';

const collect = (value: string, previous: string[] | false | undefined) => [...(Array.isArray(previous) ? previous : []), value];

/** Exit status for answers that are wrong or missing (as for a usage error). */
export const INIT_USAGE_EXIT = 2;

function formatMissing(missing: Missing[], yes: boolean): string[] {
  const width = Math.max(...missing.map((m) => m.flag.length));
  const line = (m: Missing) => `  ${m.flag.padEnd(width)}  ${m.summary}${m.default !== undefined ? ` (default: ${m.default})` : ''}`;
  const needed = missing.filter((m) => m.default === undefined);
  const defaulted = missing.filter((m) => m.default !== undefined);
  const lines: string[] = [];
  if (needed.length) lines.push(`error: no terminal to ask in; pi-image init still needs ${needed.length === 1 ? 'this answer' : 'these answers'}:`, ...needed.map(line));
  if (defaulted.length && !yes) {
    lines.push(needed.length ? 'and these, or --yes to take their defaults:' : 'error: no terminal to ask in; give these answers, or --yes to take their defaults:', ...defaulted.map(line));
  }
  return lines;
}

export function initCommand(): Command {
  const command = new Command('init')
    .description('Ask what the cluster is (board, base, engine, model, keys, …) and write a commented pi-image.yaml, with a fresh cluster secret (0600) next to it')
    .option('--out-config <path>', 'where to write the configuration', './pi-image.yaml')
    .option('-y, --yes', 'take the default for every answer not given as a flag')
    .option('-f, --force', 'replace an existing configuration file');
  for (const q of QUESTIONS) {
    if (q.id === 'sshKeys') {
      command.addOption(new Option(q.flag, `${q.summary}`).argParser(collect));
      command.addOption(new Option('--no-ssh-key', 'no SSH key: nobody can log in over SSH'));
    } else if (q.id === 'apiToken') {
      command.addOption(new Option('--api-token', q.summary).default(undefined));
      command.addOption(new Option('--no-api-token', 'no API token: the API is open to the LAN').default(undefined));
    } else {
      command.addOption(new Option(q.flag, q.summary));
    }
  }
  command.addHelpText('after', '\nWithout a terminal it asks nothing: every answer comes from a flag (or --yes), and it exits 2 naming what is missing or wrong.\n');
  command.action(async (options: Record<string, unknown>) => {
    const cwd = process.cwd();
    const configFile = resolve(cwd, String(options.outConfig));
    const yes = Boolean(options.yes);
    const force = Boolean(options.force);
    try {
      // Loaded here, not at start-up: every command starts quicker.
      const [{ validateAgainst }, { loadInitContext }, { inquirerPrompter }, { renderInit }, { resolveAnswers }, { checkConfigTarget, writeInitFiles }] = await Promise.all([
        import('../config/validate.js'),
        import('../init/context.js'),
        import('../init/prompter.js'),
        import('../init/render.js'),
        import('../init/resolve.js'),
        import('../init/write.js'),
      ]);
      await checkConfigTarget(configFile, force);
      const ctx = await loadInitContext({ cwd, home: homedir() });
      const tty = Boolean(process.stdin.isTTY && process.stdout.isTTY);
      const resolved = await resolveAnswers(options, { yes, prompter: tty ? inquirerPrompter() : undefined, ctx });
      if (!resolved.ok) {
        const lines = [...resolved.problems.map((p) => `error: ${p}`), ...formatMissing(resolved.missing, yes)];
        process.stderr.write(`${lines.join('\n')}\nnothing was written\n`);
        process.exitCode = INIT_USAGE_EXIT;
        return;
      }
      const out = renderInit(resolved.answers, configFile);
      const problems = validateAgainst('config', structuredClone(out.config));
      if (problems.length) throw new Error(`the written config would not validate:\n  - ${problems.join('\n  - ')}`);
      const written = await writeInitFiles(out.files, { force });
      const show = (p: string) => relative(cwd, p) || p;
      const lines = written.map((w) => `  ${show(w.path).padEnd(24)} ${w.what}${w.mode === 0o600 ? ' (0600' + (w.kept ? ', kept: it was there already' : '') + ')' : ''}`);
      if (resolved.answers.sshKeys.length === 0) lines.push('  note: no SSH key, so nobody can log in to the nodes over SSH');
      if (resolved.answers.board === 'pi5' && resolved.answers.base !== 'raspios') {
        lines.push("  note: Debian's kernel cannot drive the Pi 5's Ethernet: add a Raspberry Pi OS Lite `base:` for working nodes (README, \"Raspberry Pi 5\")");
      }
      process.stdout.write(`wrote:\n${lines.join('\n')}\nnext: pi-image build --config ${show(configFile)}\n`);
    } catch (error) {
      if (error instanceof Error && error.name === 'ExitPromptError') {
        process.stderr.write('cancelled; nothing was written\n');
        process.exitCode = 130;
        return;
      }
      reportError(error, silentReporter);
      process.exitCode = error instanceof ConfigError ? INIT_USAGE_EXIT : 1;
    }
  });
  return command;
}
