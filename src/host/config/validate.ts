import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { IMAGE_DIR } from '../paths.js';
import { didYouMean } from './did-you-mean.js';

export type JsonSchema = {
  type?: string;
  enum?: unknown[];
  description?: string;
  default?: unknown;
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  'x-flag'?: string;
  'x-secret'?: boolean;
  [k: string]: unknown;
};

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true, verbose: true });
ajv.addVocabulary(['x-flag', 'x-secret']);

const compiled = new Map<string, ValidateFunction>();

/** Where a schema file is (editors validate pi-image.yaml against it: yaml-language-server's `$schema` modeline). */
export const schemaPath = (name: 'config' | 'board' | 'layer' | 'tuning') => join(IMAGE_DIR, 'schema', `${name}.schema.json`);

export function loadSchema(name: 'config' | 'board' | 'layer' | 'tuning'): JsonSchema {
  return JSON.parse(readFileSync(schemaPath(name), 'utf8')) as JsonSchema;
}

/**
 * Validates (and fills defaults into) `data`; returns readable problems, one per line,
 * each naming the key, the bad value and what is allowed.
 */
export function validateAgainst(name: 'config' | 'board' | 'layer' | 'tuning', data: unknown): string[] {
  let validate = compiled.get(name);
  if (!validate) {
    validate = ajv.compile(loadSchema(name));
    compiled.set(name, validate);
  }
  if (validate(data)) return [];
  return describeErrors(validate.errors ?? [], data);
}

function keyName(instancePath: string): string {
  return instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`))
    .join('');
}

function valueAt(data: unknown, instancePath: string): unknown {
  let node: unknown = data;
  for (const part of instancePath.split('/').slice(1)) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return node;
}

function show(value: unknown): string {
  return typeof value === 'string' ? `"${value}"` : JSON.stringify(value);
}

/** What YAML did to a value that was meant otherwise: the traps people fall into most. */
function yamlTrap(value: unknown, expected: string): string {
  if (value === null) return ' (the key has no value: YAML reads an empty value as null; give one, or drop the key)';
  if (expected === 'string' && typeof value === 'number') {
    return ` (YAML read it as a number${Number.isSafeInteger(value) ? '' : ' and may have changed it'}: put the value in quotes, e.g. sha256: "0123…")`;
  }
  if (expected === 'string' && typeof value === 'boolean') return ' (YAML read it as true/false: put the value in quotes)';
  if (expected === 'array' && typeof value === 'string') return ' (a list: write [a, b] or one "- a" line per item)';
  return '';
}

export function describeErrors(errors: ErrorObject[], data: unknown): string[] {
  const lines = new Set<string>();
  for (const e of errors) {
    // An if/then rule fails with its `then` error too: that one says what is wrong.
    if (e.keyword === 'if') continue;
    const key = keyName(e.instancePath);
    const where = key ? `key "${key}"` : 'the top level';
    const value = valueAt(data, e.instancePath);
    switch (e.keyword) {
      case 'additionalProperties': {
        const extra = (e.params as { additionalProperty: string }).additionalProperty;
        const allowed = Object.keys((e.parentSchema as JsonSchema | undefined)?.properties ?? {});
        const full = key ? `${key}.${extra}` : extra;
        lines.add(`unknown key "${full}"${didYouMean(extra, allowed)}; allowed here: ${allowed.join(', ') || '(none)'}`);
        break;
      }
      case 'enum':
        lines.add(`${where}: value ${show(value)} is not allowed; allowed: ${(e.params as { allowedValues: unknown[] }).allowedValues.map(show).join(', ')}`);
        break;
      case 'type':
        lines.add(`${where}: value ${show(value)} is not of type ${(e.params as { type: string }).type}${yamlTrap(value, (e.params as { type: string }).type)}`);
        break;
      case 'pattern':
        lines.add(`${where}: value ${show(value)} does not match ${(e.params as { pattern: string }).pattern}`);
        break;
      case 'required':
        lines.add(`${where}: missing required key "${(e.params as { missingProperty: string }).missingProperty}"`);
        break;
      default:
        lines.add(`${where}: value ${show(value)} ${e.message ?? 'is invalid'}`);
    }
  }
  return [...lines];
}
