import type { EngineAdapter } from './adapter.js';
import { dllama } from './dllama.js';
import { llamaCpp } from './llama-cpp.js';

export const ENGINES: Record<EngineAdapter['name'], EngineAdapter> = { 'llama.cpp': llamaCpp, dllama };
