import { Command } from 'commander';
import { writeFileAtomic } from '../../shared/atomic-write.js';
import { DEMO_SENTENCE, demoGguf } from '../model/demo-gguf.js';
import { tinyGguf } from '../model/tiny-gguf.js';
import { tinyDllamaModel, tinyDllamaTokenizer } from '../model/tiny-dllama.js';
import { PiImageError } from '../errors.js';
import { silentReporter } from '../progress.js';
import { reportError } from './report-error.js';

export function tinyModelCommand(): Command {
  return new Command('tiny-model')
    .description(`Write one of the project's tiny deterministic GGUF models (llama architecture, under 1 MB): llama.cpp loads and serves it, so a cluster can be tried without downloading weights. By default the demo model, whose answer to any chat prompt is "${DEMO_SENTENCE}" (every layer computes, on whichever node holds it); with --random the tests' model of seeded random weights, whose text is gibberish.`)
    .argument('<file>', 'where to write the .gguf; a name ending in .m writes the tiny distributed-llama model and its tokenizer (.t beside it) instead')
    .option('--random', 'the random-weight model instead of the demo model')
    .option('--sentence <text>', 'what the demo model answers (ASCII words and punctuation, no piece twice)')
    .option('--json', 'print what was written as JSON')
    .action(async (file: string, options: { random?: boolean; sentence?: string; json?: boolean }) => {
      try {
        if (file.endsWith('.m')) {
          if (options.random || options.sentence !== undefined) throw new PiImageError('the dllama model (.m) has seeded weights of its own: no --random or --sentence');
          // Its greedy text is the same on 1, 2 and 4 nodes, and printable.
          const tokenizer = file.replace(/\.m$/, '.t');
          const [model, tok] = [tinyDllamaModel(), tinyDllamaTokenizer()];
          await writeFileAtomic(file, model);
          await writeFileAtomic(tokenizer, tok);
          if (options.json) process.stdout.write(`${JSON.stringify({ file, bytes: model.length, tokenizer, tokenizerBytes: tok.length, model: 'dllama' })}\n`);
          else process.stdout.write(`${file}: ${model.length} bytes, ${tokenizer}: ${tok.length} bytes (distributed-llama, Q40 weights: run with --buffer-float-type q80)\n`);
          return;
        }
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
