import { open } from 'node:fs/promises';

/** What a build needs to know of a GGUF model before it copies it into an image. */
export interface GgufHeader {
  version: number;
  architecture?: string;
  /** `<architecture>.attention.head_count_kv`: how many ways the KV cache can be split. */
  kvHeads?: number;
  contextLength?: number;
  /** The shape the memory budget needs: layers, embedding width, attention heads. */
  layers?: number;
  embedding?: number;
  heads?: number;
}

/** The metadata is read from the start of the file; a tokenizer of 150k tokens fits well within this. */
const MAX_HEADER_BYTES = 64 * 1024 * 1024;

enum T { U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 }
const SCALAR_BYTES: Partial<Record<T, number>> = { [T.U8]: 1, [T.I8]: 1, [T.BOOL]: 1, [T.U16]: 2, [T.I16]: 2, [T.U32]: 4, [T.I32]: 4, [T.F32]: 4, [T.U64]: 8, [T.I64]: 8, [T.F64]: 8 };

class HeaderError extends Error {}

/** A cursor over the first bytes of the file; running past them means the header is cut short. */
class Cursor {
  at = 0;
  constructor(private readonly b: Buffer) {}
  private need(n: number): void {
    if (this.at + n > this.b.length) throw new HeaderError('the metadata ends early (a damaged file, or more than 64 MiB of it)');
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }
  u64(): number {
    this.need(8);
    const v = this.b.readBigUInt64LE(this.at);
    this.at += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new HeaderError('a length in the metadata is impossibly large');
    return Number(v);
  }
  string(): string {
    const n = this.u64();
    this.need(n);
    const s = this.b.toString('utf8', this.at, this.at + n);
    this.at += n;
    return s;
  }
  /** A value of `type`: numbers are returned (for the keys read), anything else skipped. */
  value(type: T): number | undefined {
    if (type === T.STRING) {
      this.string();
      return undefined;
    }
    if (type === T.ARRAY) {
      const itemType = this.u32() as T;
      const count = this.u64();
      const size = SCALAR_BYTES[itemType];
      if (size !== undefined) {
        this.need(size * count);
        this.at += size * count;
      } else for (let i = 0; i < count; i++) this.value(itemType);
      return undefined;
    }
    const size = SCALAR_BYTES[type];
    if (size === undefined) throw new HeaderError(`unknown metadata value type ${type}`);
    this.need(size);
    const v = type === T.U32 ? this.b.readUInt32LE(this.at) : type === T.I32 ? this.b.readInt32LE(this.at) : type === T.U64 ? Number(this.b.readBigUInt64LE(this.at)) : undefined;
    this.at += size;
    return v;
  }
}

/**
 * Reads a GGUF file's header and the metadata a build checks: that it is a GGUF file at all,
 * its architecture, KV heads and trained context length. Throws with what is wrong.
 */
export async function readGgufHeader(path: string): Promise<GgufHeader> {
  const handle = await open(path, 'r');
  let buffer: Buffer;
  try {
    const size = (await handle.stat()).size;
    buffer = Buffer.alloc(Math.min(size, MAX_HEADER_BYTES));
    await handle.read(buffer, 0, buffer.length, 0);
  } finally {
    await handle.close();
  }
  if (buffer.length < 8 || buffer.toString('latin1', 0, 4) !== 'GGUF') throw new HeaderError('it is not a GGUF file (no GGUF magic at its start)');
  const c = new Cursor(buffer);
  c.at = 4;
  const version = c.u32();
  if (version < 2 || version > 3) throw new HeaderError(`GGUF version ${version}; llama.cpp reads versions 2 and 3`);
  c.u64(); // tensors
  const kvCount = c.u64();
  const numbers = new Map<string, number>();
  let architecture: string | undefined;
  for (let i = 0; i < kvCount; i++) {
    const key = c.string();
    const type = c.u32() as T;
    if (key === 'general.architecture' && type === T.STRING) architecture = c.string();
    else {
      const v = c.value(type);
      if (v !== undefined) numbers.set(key, v);
    }
  }
  return {
    version,
    ...(architecture ? { architecture } : {}),
    ...(architecture && numbers.has(`${architecture}.attention.head_count_kv`) ? { kvHeads: numbers.get(`${architecture}.attention.head_count_kv`) } : {}),
    ...(architecture && numbers.has(`${architecture}.context_length`) ? { contextLength: numbers.get(`${architecture}.context_length`) } : {}),
    ...(architecture && numbers.has(`${architecture}.block_count`) ? { layers: numbers.get(`${architecture}.block_count`) } : {}),
    ...(architecture && numbers.has(`${architecture}.embedding_length`) ? { embedding: numbers.get(`${architecture}.embedding_length`) } : {}),
    ...(architecture && numbers.has(`${architecture}.attention.head_count`) ? { heads: numbers.get(`${architecture}.attention.head_count`) } : {}),
  };
}

export { HeaderError as GgufHeaderError };
