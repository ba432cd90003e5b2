import { dirname, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { build, planBuild } from '../pipeline/pipeline.js';
import { configFlags, readConfigFile, resolveConfig } from '../config/config.js';
import { InterruptedError } from '../errors.js';
import { formatSeconds, HumanReporter, JsonReporter, type Reporter } from '../progress.js';
import { reportError } from './report-error.js';

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** Adds every setting of the config schema that has an `x-flag` as an option of `command`. */
export function addConfigOptions(command: Command): Command {
  command.option('-c, --config <file>', 'pi-image.yaml to read (flags override it)');
  for (const spec of configFlags()) {
    if (spec.schema.type === 'boolean') {
      const long = spec.flag.split(' ')[0] as string;
      command.addOption(new Option(long, spec.description).default(undefined));
      command.addOption(new Option(long.replace(/^--/, '--no-'), `turn off ${long}`).default(undefined));
    } else if (spec.schema.type === 'array') {
      command.addOption(new Option(spec.flag, `${spec.description} Repeat for more.`).argParser(collect));
    } else {
      command.addOption(new Option(spec.flag, spec.description));
    }
  }
  return command;
}

export async function loadConfigFromOptions(options: Record<string, unknown>) {
  const path = options.config as string | undefined;
  const file = path ? await readConfigFile(path) : {};
  const config = resolveConfig(file, options, path ?? 'flags');
  // Relative paths in a config file are relative to the file, not to where pi-image runs.
  const configDir = path ? dirname(resolve(path)) : process.cwd();
  if (path && !options.out && file.out) config.out = resolve(configDir, config.out);
  return { config, configDir };
}

export function buildCommand(): Command {
  const command = new Command('build')
    .description('Build a flashable disk image: base rootfs (mmdebstrap, cached) → layers → FAT + ext4 partitions → .img, .img.zst, .bmap, SHA256SUMS, manifest.json')
    .option('--print-plan', 'print the resolved plan (board, suite, mirrors, packages, layers, outputs, cache keys) and exit without building')
    .option('-v, --verbose', "stream the underlying tools' output")
    .option('--json', 'print machine-readable events (NDJSON) on stdout instead of the progress display');
  addConfigOptions(command);
  command.addHelpText(
    'after',
    '\nEnvironment:\n  PI_IMAGE_CACHE     cache folder for stage outputs (default ~/.cache/pi-image)\n  SOURCE_DATE_EPOCH  timestamp for every file in the image (default: derived from the base rootfs)\n',
  );
  command.action(async (options: Record<string, unknown>) => {
    const reporter: Reporter = options.json ? new JsonReporter(Boolean(options.verbose)) : new HumanReporter(Boolean(options.verbose));
    const controller = new AbortController();
    const onSignal = (signal: NodeJS.Signals) => {
      if (!controller.signal.aborted) controller.abort(new InterruptedError(signal));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      const { config, configDir } = await loadConfigFromOptions(options);
      if (options.printPlan) {
        const { plan } = await planBuild(config, { configDir });
        if (options.json) reporter.emit({ type: 'result', data: plan });
        else process.stdout.write(`${JSON.stringify(plan, null, 2)}\n`);
        return;
      }
      const result = await build({ config, configDir, reporter, signal: controller.signal });
      reporter.emit({ type: 'result', data: { outDir: result.outDir, stages: result.stages, toolSeconds: result.toolSeconds, artifacts: result.manifest.artifacts } });
      if (!options.json) {
        const total = result.stages.reduce((s, t) => s + t.seconds, 0);
        process.stderr.write(`\nbuilt ${result.outDir} in ${formatSeconds(total)}:\n${result.manifest.artifacts.map((a) => `  ${a.file}  ${(a.size / 1048576).toFixed(1)} MiB`).join('\n')}\n`);
      }
    } catch (error) {
      reportError(controller.signal.aborted ? controller.signal.reason : error, reporter);
      process.exitCode = controller.signal.aborted ? 130 : 1;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  });
  return command;
}
