import type { Reporter } from '../progress.js';
import { runTool } from '../tools/run.js';

/** The block map bmaptool reads (XML, SHA-256 per mapped range), made by bmaptool itself from the sparse image. */
export async function createBmap(image: string, output: string, reporter: Reporter, stage = 'artifacts'): Promise<void> {
  await runTool('bmaptool', ['create', '-o', output, image], { stage, reporter });
}
