import { describe, expect, it } from 'vitest';
import { secretProblem, usableSecret } from '../../../src/shared/secrets.js';

describe('a usable secret', () => {
  it('is at least 16 characters once the white space around it is gone', () => {
    expect(secretProblem(Buffer.from(`${'a1'.repeat(32)}\n`))).toBeUndefined();
    expect(usableSecret(Buffer.from(`  ${'a1'.repeat(8)}\n`))).toEqual(Buffer.from('a1'.repeat(8)));
    expect(secretProblem(Buffer.from(`${'a'.repeat(15)}\n`))).toBe('holds 15 characters; at least 16 are needed');
    expect(secretProblem(Buffer.from(' \n\t'))).toBe('holds 0 characters; at least 16 are needed');
    expect(usableSecret(Buffer.from('short'))).toBeUndefined();
  });

  it('is not all zero bytes, however long (what the first boot leaves on the FAT after wiping one)', () => {
    expect(secretProblem(Buffer.alloc(65))).toMatch(/^is all zero bytes/);
    expect(secretProblem(Buffer.from('\0'.repeat(64) + '\n'))).toMatch(/^is all zero bytes/);
    expect(usableSecret(Buffer.alloc(65))).toBeUndefined();
  });
});
