// Regenerates the README's generated sections, so docs and data never disagree (a unit test
// fails when they do): the configuration reference from the config schema, and the tuning
// table from the tuning profile.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configReferenceMarkdown } from '../dist/host/config/reference.js';
import { leversMarkdown } from '../dist/host/cli/levers-command.js';
import { loadTuningProfile } from '../dist/host/catalog/tuning-profiles.js';

const readme = join(import.meta.dirname, '..', 'README.md');
let text = readFileSync(readme, 'utf8');
const blocks = { config: configReferenceMarkdown(), levers: leversMarkdown(await loadTuningProfile('pi5-inference')) };
for (const [name, body] of Object.entries(blocks)) {
  const begin = new RegExp(`<!-- ${name}:begin[^>]*-->\\n`);
  const m = begin.exec(text);
  const stop = text.indexOf(`<!-- ${name}:end -->`);
  if (!m || stop < m.index) throw new Error(`README.md has no <!-- ${name}:begin --> … <!-- ${name}:end --> block`);
  text = `${text.slice(0, m.index + m[0].length)}${body}${text.slice(stop)}`;
}
writeFileSync(readme, text);
