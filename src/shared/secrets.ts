/**
 * What counts as a usable secret (the cluster secret, the API token), for every place that
 * reads one: at least MIN_SECRET_CHARS characters once the white space around it is gone
 * (`openssl rand -hex 32` gives 64), and not all zero bytes, which is what the first boot's
 * wipe leaves on the FAT copy before it deletes it.
 */
export const MIN_SECRET_CHARS = 16;

/** What is wrong with a secret file's bytes, as the end of a sentence naming the file; undefined when it is usable. */
export function secretProblem(data: Uint8Array): string | undefined {
  const text = Buffer.from(data).toString('utf8').trim();
  if (/^\0+$/.test(text)) return 'is all zero bytes (a copy that was wiped)';
  if (text.length < MIN_SECRET_CHARS) return `holds ${text.length} characters; at least ${MIN_SECRET_CHARS} are needed`;
  return undefined;
}

/** The secret as its users take it (the white space around it dropped), or undefined when it is not usable. */
export function usableSecret(data: Uint8Array): Buffer | undefined {
  return secretProblem(data) ? undefined : Buffer.from(Buffer.from(data).toString('utf8').trim());
}
