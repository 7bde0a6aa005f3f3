import { defineConfig } from 'vitest/config';
import { PATIENCE } from './test/helpers/patience.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/helpers/leftovers-hook.ts'],
    // koffi and BPF links live in the worker process: use processes, not threads.
    pool: 'forks',
    testTimeout: 60_000 * PATIENCE,
    hookTimeout: 60_000 * PATIENCE,
  },
});
