/** Key types OpenSSH writes into a .pub file (authorized_keys format). */
const KEY_TYPES = new Set([
  'ssh-ed25519',
  'ssh-rsa',
  'ssh-dss',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
]);

export interface PublicKey {
  type: string;
  comment: string;
  /** The line as it goes into authorized_keys (trimmed). */
  line: string;
}

/**
 * Parses one public key line (`<type> <base64> [comment]`): the type must be one OpenSSH
 * knows and the base64 blob must decode to a key of that same type (the blob starts with its
 * type name, length-prefixed). Returns the problem as the end of a sentence, or the key.
 */
export function parsePublicKeyLine(line: string): PublicKey | { problem: string } {
  if (line.includes('PRIVATE KEY')) return { problem: 'is a PRIVATE key: never put that in an image (give the .pub file)' };
  const [type = '', blob = '', ...rest] = line.trim().split(/\s+/);
  if (!KEY_TYPES.has(type)) return { problem: `does not start with a key type (${[...KEY_TYPES].slice(0, 3).join(', ')}, …), but "${type.slice(0, 40)}"` };
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blob) || blob.length % 4 !== 0) return { problem: `has a ${type} key whose data is not base64` };
  const data = Buffer.from(blob, 'base64');
  const length = data.length >= 4 ? data.readUInt32BE(0) : -1;
  const inner = length > 0 && length <= data.length - 4 ? data.subarray(4, 4 + length).toString('latin1') : '';
  if (inner !== type) return { problem: `has key data that is not a ${type} key` };
  return { type, comment: rest.join(' '), line: line.trim() };
}

/** Checks a whole .pub / authorized_keys text: at least one key, every non-comment line a key. */
export function parsePublicKeyFile(text: string): PublicKey[] | { problem: string } {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  if (!lines.length) return { problem: 'holds no key' };
  const keys: PublicKey[] = [];
  for (const line of lines) {
    const key = parsePublicKeyLine(line);
    if ('problem' in key) return key;
    keys.push(key);
  }
  return keys;
}
