import { ProfileError } from '../errors.js';
import { loadSchema, type JsonSchema } from '../config/validate.js';

let unitName: RegExp | undefined;

/** The layer schema's unit name pattern ($defs.unit_name): one definition for the schema and the code. */
export function unitNamePattern(): RegExp {
  if (!unitName) {
    const source = (loadSchema('layer').$defs as Record<string, JsonSchema> | undefined)?.unit_name?.pattern;
    if (!source) throw new Error('image/schema/layer.schema.json has no $defs.unit_name.pattern');
    unitName = new RegExp(source);
  }
  return unitName;
}

/**
 * Checks a unit name again where code puts it into a command (a shell hook runs as root),
 * so nothing but a plain unit name gets there, whatever path it came by.
 */
export function checkUnitName(unit: string, key: string): string {
  const pattern = unitNamePattern();
  if (!pattern.test(unit)) {
    throw new ProfileError(
      `${key}: "${unit}" is not a systemd unit name`,
      `allowed: a name matching ${pattern.source} (letters, digits, @ . _ - and a unit type), e.g. ssh.service; check ${key} in the layers' layer.yaml`,
    );
  }
  return unit;
}
