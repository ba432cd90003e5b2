import { DLLAMA_MODEL_MAGIC } from '../../src/host/model/dllama-header.js';
import { keyValueHeader } from '../../src/host/model/tiny-dllama.js';

/** The header of a distributed-llama .m model (magic, header size, key/value int32 pairs) with `kvHeads` KV heads: enough for a build's checks. */
export function dllamaModelHeader(opts: { kvHeads?: number; heads?: number } = {}): Buffer {
  return keyValueHeader(DLLAMA_MODEL_MAGIC, [[5, opts.heads ?? 8], [6, opts.kvHeads ?? 8]]);
}
