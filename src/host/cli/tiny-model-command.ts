import { Command } from 'commander';
import { writeFileAtomic } from '../../shared/atomic-write.js';
import { DEMO_SENTENCE, demoGguf } from '../model/demo-gguf.js';
import { tinyGguf } from '../model/tiny-gguf.js';
import { PiImageError } from '../errors.js';
import { silentReporter } from '../progress.js';
import { reportError } from './report-error.js';

export function tinyModelCommand(): Command {
  return new Command('tiny-model')
    .description(`Write one of the project's tiny deterministic GGUF models (llama architecture, under 1 MB): llama.cpp loads and serves it, so a cluster can be tried without downloading weights. By default the demo model, whose answer to any chat prompt is "${DEMO_SENTENCE}" (every layer computes, on whichever node holds it); with --random the tests' model of seeded random weights, whose text is gibberish.`)
    .argument('<file>', 'where to write the .gguf')
    .option('--random', 'the random-weight model instead of the demo model')
    .option('--sentence <text>', 'what the demo model answers (ASCII words and punctuation, no piece twice)')
    .option('--json', 'print what was written as JSON')
    .action(async (file: string, options: { random?: boolean; sentence?: string; json?: boolean }) => {
      try {
        if (options.random && options.sentence !== undefined) throw new PiImageError('--sentence is for the demo model, not with --random');
        const sentence = options.sentence ?? DEMO_SENTENCE;
        let data: Buffer;
        try {
          data = options.random ? tinyGguf() : demoGguf({ sentence });
        } catch (e) {
          throw new PiImageError((e as Error).message);
        }
        await writeFileAtomic(file, data);
        if (options.json) process.stdout.write(`${JSON.stringify({ file, bytes: data.length, model: options.random ? 'random' : 'demo', ...(options.random ? {} : { answer: sentence }) })}\n`);
        else process.stdout.write(`${file}: ${data.length} bytes, ${options.random ? 'random weights' : `answers "${sentence}"`}\n`);
      } catch (e) {
        reportError(e, silentReporter);
        process.exitCode = 1;
      }
    });
}
