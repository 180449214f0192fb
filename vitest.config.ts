import { configDefaults, defineConfig } from 'vitest/config';

// Tests that compare the guest's speed in two configurations (4 harts against 1) need the host's
// cores to themselves: they run in a group of their own, after every other test file has ended
// (sequence.groupOrder), so no other file's guests share the cores meanwhile.
const ALONE = ['test/e2e/linux-smp.test.ts'];

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [
      { extends: true, test: { name: 'vmctl', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...ALONE] } },
      { extends: true, test: { name: 'alone', include: ALONE, sequence: { groupOrder: 1 } } },
    ],
  },
});
