import { InterruptedError } from '../errors.js';
import { HumanReporter, JsonReporter, type Reporter } from '../progress.js';
import { reportError } from './report-error.js';

/**
 * Runs a long command: progress for a person or NDJSON (`--json`), Ctrl-C and SIGTERM as
 * cancellation through `signal`, a failure reported with its hint and exit code 1 (130 when
 * interrupted).
 */
export async function runCancellable(options: { json?: unknown; verbose?: unknown }, work: (ctx: { reporter: Reporter; signal: AbortSignal }) => Promise<void>): Promise<void> {
  const reporter: Reporter = options.json ? new JsonReporter(Boolean(options.verbose)) : new HumanReporter(Boolean(options.verbose));
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (!controller.signal.aborted) controller.abort(new InterruptedError(signal));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await work({ reporter, signal: controller.signal });
  } catch (error) {
    reportError(controller.signal.aborted ? controller.signal.reason : error, reporter);
    process.exitCode = controller.signal.aborted ? 130 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
