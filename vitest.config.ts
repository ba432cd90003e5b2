import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests build images and boot VMs on a 2-core machine: one file at a time.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60 * 60_000,
  },
});
