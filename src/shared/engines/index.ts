import type { EngineAdapter } from './adapter.js';
import { dllama } from './dllama.js';
import { llamaCpp } from './llama-cpp.js';

/** Every engine pi-image knows, by the name `engine.name` takes. */
export const ENGINES: Record<EngineAdapter['name'], EngineAdapter> = { 'llama.cpp': llamaCpp, dllama };
