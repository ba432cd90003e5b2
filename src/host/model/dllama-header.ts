import { open } from 'node:fs/promises';

/** distributed-llama's .m model header: a magic number, the header's size, then (key, value) int32 pairs. */
export const DLLAMA_MODEL_MAGIC = 0xa00abcd;
const KEYS = { version: 0, dim: 2, nLayers: 4, nHeads: 5, nKvHeads: 6, vocabSize: 9, maxSeqLen: 10, headDim: 19 } as const;

export interface DllamaHeader {
  kvHeads?: number;
  heads?: number;
  layers?: number;
  maxSeqLen?: number;
  dim?: number;
  vocabSize?: number;
  /** Absent: dim / heads (as src/llm.cpp takes it). */
  headDim?: number;
}

/** Reads a .m file's header; throws with what is wrong when it is not one. */
export async function readDllamaHeader(path: string): Promise<DllamaHeader> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(8);
    const { bytesRead } = await handle.read(head, 0, 8, 0);
    if (bytesRead < 8 || head.readInt32LE(0) !== DLLAMA_MODEL_MAGIC) throw new Error('it is not a distributed-llama model (.m): no 0xA00ABCD magic at its start');
    const size = head.readInt32LE(4);
    if (size < 8 || size > 4096 || (size - 8) % 8 !== 0) throw new Error(`its header size ${size} is impossible`);
    const data = Buffer.alloc(size - 8);
    await handle.read(data, 0, data.length, 8);
    const values = new Map<number, number>();
    for (let at = 0; at + 8 <= data.length; at += 8) values.set(data.readInt32LE(at), data.readInt32LE(at + 4));
    return {
      ...(values.has(KEYS.nKvHeads) ? { kvHeads: values.get(KEYS.nKvHeads) } : {}),
      ...(values.has(KEYS.nHeads) ? { heads: values.get(KEYS.nHeads) } : {}),
      ...(values.has(KEYS.nLayers) ? { layers: values.get(KEYS.nLayers) } : {}),
      ...(values.has(KEYS.maxSeqLen) ? { maxSeqLen: values.get(KEYS.maxSeqLen) } : {}),
      ...(values.has(KEYS.dim) ? { dim: values.get(KEYS.dim) } : {}),
      ...(values.has(KEYS.vocabSize) ? { vocabSize: values.get(KEYS.vocabSize) } : {}),
      ...(values.has(KEYS.headDim) && values.get(KEYS.headDim) ? { headDim: values.get(KEYS.headDim) } : {}),
    };
  } finally {
    await handle.close();
  }
}
