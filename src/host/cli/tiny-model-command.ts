import { Command } from 'commander';
import { writeFileAtomic } from '../../shared/atomic-write.js';
import { tinyGguf } from '../model/tiny-gguf.js';
import { silentReporter } from '../progress.js';
import { reportError } from './report-error.js';

export function tinyModelCommand(): Command {
  return new Command('tiny-model')
    .description("Write the project's tiny deterministic GGUF model (random weights from a fixed seed, byte-level vocabulary): llama.cpp loads and serves it, so a cluster can be tried without downloading weights. Its text is gibberish.")
    .argument('<file>', 'where to write the .gguf')
    .action(async (file: string) => {
      try {
        const data = tinyGguf();
        await writeFileAtomic(file, data);
        process.stdout.write(`${file}: ${data.length} bytes\n`);
      } catch (e) {
        reportError(e, silentReporter);
        process.exitCode = 1;
      }
    });
}
