import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { ProfileError } from '../errors.js';
import { validateAgainst } from '../config/validate.js';

/**
 * One YAML file of the catalog (a board profile, a layer, a tuning profile): read, parsed
 * and checked against its schema in image/schema/, with the schema's defaults filled in.
 */
export async function readCatalogFile(schema: 'board' | 'layer' | 'tuning', path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new ProfileError(`${what}: cannot read ${path}`);
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (e) {
    throw new ProfileError(`${what}: ${path} is not valid YAML: ${(e as Error).message}`);
  }
  const problems = validateAgainst(schema, data);
  if (problems.length) throw new ProfileError(`${what} (${path}) is invalid:\n  - ${problems.join('\n  - ')}`);
  return data;
}
