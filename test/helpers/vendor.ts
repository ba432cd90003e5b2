import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './cli.js';

/** Third-party release tarballs beside the checkout (not in it): used as a user uses a downloaded release. */
export const VENDOR_DIR = process.env.PI_IMAGE_VENDOR ?? join(REPO, '../shared/vendor');

/** distributed-llama's source releases, with the SHA-256 a user would pin. */
export const DLLAMA_SOURCES = {
  '0.16.3': { file: 'distributed-llama-0.16.3.tar.gz', sha256: 'a6de16d74c341e1f1ba58129eb3bc4cdc4ac93335c6014ffc4cbf6a9122daee9' },
  '0.16.4': { file: 'distributed-llama-0.16.4.tar.gz', sha256: '4e030661d115ab2b78c52e0197344f2ea68ba8bdffc2d71ea943205b7591ae0c' },
} as const;

/** The path of a vendored file; a test that needs one fails (never skips) when it is not there. */
export function vendored(file: string): string {
  const path = join(VENDOR_DIR, file);
  if (!existsSync(path)) throw new Error(`${path} is missing: the dllama tests build distributed-llama from its release tarball in ${VENDOR_DIR} (set PI_IMAGE_VENDOR to another folder)`);
  return path;
}
