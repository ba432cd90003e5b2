import { Command, Option } from 'commander';
import { configFlags, configSourceLine, findConfigFile, loadConfig } from '../config/config.js';
import { formatSeconds } from '../progress.js';
import { runCancellable } from './cancellable.js';

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** Adds every setting of the config schema that has an `x-flag` as an option of `command`. */
export function addConfigOptions(command: Command): Command {
  command.option('-c, --config <file>', 'pi-image.yaml to read (flags override it); default: ./pi-image.yaml when it exists');
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

export function buildCommand(): Command {
  const command = new Command('build')
    .description('Build a flashable disk image: base rootfs (mmdebstrap, cached) → layers → FAT + ext4 partitions → .img, .img.zst, .bmap, SHA256SUMS, manifest.json')
    .option('--print-plan', 'check the config and print what would be built (board, base, kernel, engine, model, cluster, levers, outputs, warnings), then exit without building; with --json the whole plan')
    .option('-v, --verbose', "stream the underlying tools' output")
    .option('--json', 'print machine-readable events (NDJSON) on stdout instead of the progress display');
  addConfigOptions(command);
  command.addHelpText(
    'after',
    '\nEnvironment:\n  PI_IMAGE_CACHE     cache folder for stage outputs (default ~/.cache/pi-image)\n  SOURCE_DATE_EPOCH  newest file time in the image (default: the Debian archive\'s Release date; from an\n                     imported image, its newest file): the same inputs give the same image anywhere\n',
  );
  command.action((options: Record<string, unknown>) =>
    runCancellable(options, async ({ reporter, signal }) => {
      const configFile = await findConfigFile(options.config as string | undefined);
      if (!options.json) process.stderr.write(configSourceLine(configFile));
      const config = await loadConfig(configFile, options);
      // Loaded here, not at start-up: `--help` and the other commands stay quick.
      const [{ planBuild }, { build }] = await Promise.all([import('../plan/plan-build.js'), import('../pipeline/pipeline.js')]);
      if (options.printPlan) {
        const { plan } = await planBuild(config);
        if (options.json) reporter.emit({ type: 'result', data: plan });
        else process.stdout.write((await import('../plan/plan-summary.js')).planSummary(plan));
        return;
      }
      const result = await build({ config, reporter, signal });
      reporter.emit({ type: 'result', data: { outDir: result.outDir, stages: result.stages, toolSeconds: result.toolSeconds, artifacts: result.manifest.artifacts } });
      if (!options.json) {
        const total = result.stages.reduce((s, t) => s + t.seconds, 0);
        process.stderr.write(`\nbuilt ${result.outDir} in ${formatSeconds(total)}:\n${result.manifest.artifacts.map((a) => `  ${a.file}  ${(a.size / 1048576).toFixed(1)} MiB`).join('\n')}\n`);
      }
    }),
  );
  return command;
}
