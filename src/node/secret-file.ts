import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SECRETS_DIR } from '../shared/node-paths.js';
import { secretProblem, usableSecret } from '../shared/secrets.js';

/** A secret from /etc/pi-image; undefined when there is none, an error when it is not usable (a bad API token must not serve without one). */
export async function readNodeSecret(name: string): Promise<Buffer | undefined> {
  const data = await readFile(join(SECRETS_DIR, name)).catch(() => undefined);
  if (!data) return undefined;
  const problem = secretProblem(data);
  if (problem) throw new Error(`${join(SECRETS_DIR, name)} ${problem}: put a usable ${name} on the boot partition as pi-image/${name} and reboot`);
  return usableSecret(data);
}
