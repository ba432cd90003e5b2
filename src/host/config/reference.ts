import { loadSchema, type JsonSchema } from './validate.js';

/** The README's configuration reference, generated from the schema (the one declaration of every setting). */
export function configReferenceMarkdown(schema: JsonSchema = loadSchema('config')): string {
  const rows: string[] = [];
  const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const walk = (node: JsonSchema, prefix: string) => {
    for (const [key, prop] of Object.entries(node.properties ?? {})) {
      const path = prefix ? `${prefix}.${key}` : key;
      const flag = prop['x-flag'] ? `\`${prop['x-flag'].split(' ')[0]}\`${prop.type === 'array' ? ' (repeat)' : ''}${prop.type === 'boolean' ? ` / \`--no-${prop['x-flag'].slice(2)}\`` : ''}` : '';
      const allowed = prop.enum ? ` One of: ${prop.enum.map((v) => `\`${v}\``).join(', ')}.` : '';
      const dflt = prop.default === undefined || (typeof prop.default === 'object' && prop.properties) ? '' : `\`${JSON.stringify(prop.default)}\``;
      rows.push(`| \`${path}\` | ${flag} | ${dflt} | ${cell(`${prop.description ?? ''}${allowed}`)} |`);
      if (prop.properties) walk(prop, path);
    }
  };
  walk(schema, '');
  return ['| key | flag | default | meaning |', '|---|---|---|---|', ...rows, ''].join('\n');
}
