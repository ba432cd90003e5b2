import { Command } from 'commander';
import { planBuild } from '../pipeline/pipeline.js';
import { silentReporter } from '../progress.js';
import { addConfigOptions, loadConfigFromOptions } from './build-command.js';
import { reportError } from './report-error.js';

export function bootconfigCommand(): Command {
  const command = new Command('bootconfig').description(
    "Print the config.txt and cmdline.txt a build would put on the boot partition (board, layers and pi-image.yaml composed)",
  );
  addConfigOptions(command);
  command.action(async (options: Record<string, unknown>) => {
    try {
      const { config, configDir } = await loadConfigFromOptions(options);
      const { plan } = await planBuild(config, { configDir });
      process.stdout.write(`# config.txt\n${plan.boot.configTxt ?? `(board ${plan.board.name} has no config.txt)\n`}\n# cmdline.txt\n${plan.boot.cmdline}`);
    } catch (e) {
      reportError(e, silentReporter);
      process.exitCode = 1;
    }
  });
  return command;
}
