/** Reads back a GGUF v3 file: header, metadata and (F32 only) tensors. Enough to check what llama.cpp expects. */
export interface GgufFile {
  magic: string;
  version: number;
  meta: Record<string, unknown>;
  infos: { name: string; dims: number[]; type: number; offset: number }[];
  dataStart: number;
  tensor(name: string): Float32Array;
}

export function readGguf(buf: Buffer): GgufFile {
  let at = 0;
  const u32 = () => ((at += 4), buf.readUInt32LE(at - 4));
  const u64 = () => ((at += 8), Number(buf.readBigUInt64LE(at - 8)));
  const str = () => {
    const n = u64();
    at += n;
    return buf.toString('utf8', at - n, at);
  };
  const value = (type: number): unknown => {
    switch (type) {
      case 4: return u32();
      case 5: return ((at += 4), buf.readInt32LE(at - 4));
      case 6: return ((at += 4), buf.readFloatLE(at - 4));
      case 8: return str();
      case 9: {
        const inner = u32();
        const n = u64();
        return Array.from({ length: n }, () => value(inner));
      }
      default: throw new Error(`type ${type}`);
    }
  };
  const magic = buf.toString('latin1', 0, 4);
  at = 4;
  const version = u32();
  const tensors = u64();
  const kvs = u64();
  const meta: Record<string, unknown> = {};
  for (let i = 0; i < kvs; i++) {
    const key = str();
    meta[key] = value(u32());
  }
  const infos = Array.from({ length: tensors }, () => {
    const name = str();
    const dims = Array.from({ length: u32() }, () => u64());
    const type = u32();
    const offset = u64();
    return { name, dims, type, offset };
  });
  const dataStart = Math.ceil(at / 32) * 32;
  const loaded = new Map<string, Float32Array>();
  const tensor = (name: string): Float32Array => {
    const done = loaded.get(name);
    if (done) return done;
    const info = infos.find((t) => t.name === name);
    if (!info || info.type !== 0) throw new Error(`no F32 tensor ${name}`);
    const n = info.dims.reduce((a, b) => a * b, 1);
    const start = dataStart + info.offset;
    const data = new Float32Array(buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + start + n * 4));
    loaded.set(name, data);
    return data;
  };
  return { magic, version, meta, infos, dataStart, tensor };
}
