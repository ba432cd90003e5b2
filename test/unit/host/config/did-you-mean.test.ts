import { describe, expect, it } from 'vitest';
import { didYouMean } from '../../../../src/host/config/did-you-mean.js';
import { loadBoard } from '../../../../src/host/catalog/boards.js';
import { loadBuiltInLayer } from '../../../../src/host/catalog/layers.js';
import { loadTuningProfile } from '../../../../src/host/catalog/tuning-profiles.js';

describe('did you mean', () => {
  it('suggests a close name (a typo, a swap) and nothing for a far one', () => {
    expect(didYouMean('pi55', ['pi4', 'pi5', 'qemu'])).toBe(' (did you mean "pi5"?)');
    expect(didYouMean('qmeu', ['pi4', 'pi5', 'qemu'])).toBe(' (did you mean "qemu"?)');
    expect(didYouMean('raspberry', ['pi4', 'pi5', 'qemu'])).toBe('');
  });

  it('is in the errors for unknown boards, layers and tuning profiles', async () => {
    await expect(loadBoard('pi55')).rejects.toThrow('unknown board "pi55" (did you mean "pi5"?); available boards: pi4, pi5, qemu');
    await expect(loadBuiltInLayer('clustr')).rejects.toThrow(/unknown layer "clustr" \(did you mean "cluster"\?\)/);
    await expect(loadTuningProfile('pi5-inferense')).rejects.toThrow(/unknown tuning profile "pi5-inferense" \(did you mean "pi5-inference"\?\)/);
  });
});
