/** The header of a distributed-llama .m model (magic, header size, key/value int32 pairs) with `kvHeads` KV heads: enough for a build's checks. */
export function dllamaModelHeader(opts: { kvHeads?: number; heads?: number } = {}): Buffer {
  const pairs: [number, number][] = [[5, opts.heads ?? 8], [6, opts.kvHeads ?? 8]];
  const b = Buffer.alloc(8 + pairs.length * 8);
  b.writeInt32LE(0xa00abcd, 0);
  b.writeInt32LE(b.length, 4);
  pairs.forEach(([k, v], i) => {
    b.writeInt32LE(k, 8 + i * 8);
    b.writeInt32LE(v, 12 + i * 8);
  });
  return b;
}
