import { Command } from 'commander';
import { configSourceLine, findConfigFile, loadConfig } from '../config/config.js';
import { silentReporter } from '../progress.js';
import { addConfigOptions } from './build-command.js';
import { reportError } from './report-error.js';

export function bootconfigCommand(): Command {
  const command = new Command('bootconfig').description(
    "Print the config.txt and cmdline.txt a build would put on the boot partition (board, layers and pi-image.yaml composed)",
  );
  addConfigOptions(command);
  command.option('--json', 'the two files as JSON: { configTxt, cmdline }');
  command.action(async (options: Record<string, unknown>) => {
    try {
      const configFile = await findConfigFile(options.config as string | undefined);
      if (!options.json) process.stderr.write(configSourceLine(configFile));
      const { planBuild } = await import('../plan/plan-build.js');
      const { plan } = await planBuild(await loadConfig(configFile, options));
      if (options.json) process.stdout.write(`${JSON.stringify({ config: configFile ?? null, configTxt: plan.boot.configTxt, cmdline: plan.boot.cmdline })}\n`);
      else process.stdout.write(`# config.txt\n${plan.boot.configTxt ?? `(board ${plan.board.name} has no config.txt)\n`}\n# cmdline.txt\n${plan.boot.cmdline}`);
    } catch (e) {
      reportError(e, silentReporter);
      process.exitCode = 1;
    }
  });
  return command;
}
