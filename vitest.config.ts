import { configDefaults, defineConfig } from 'vitest/config';

// `npm test` runs the project `vmctl`. The Linux 4-harts-against-1 speed-up (issue 12) is a
// measurement, not a check of behaviour: it depends on the host's free cores, so it is not part of
// `npm test` (whose files run two at a time beside each other) but of `npm run test:smp`, which
// runs it alone (also after the others when both projects are run: sequence.groupOrder).
const ALONE = ['test/e2e/linux-smp.test.ts'];
// Files that must run with TurboFan off, so that what Maglev compiles stays in use (`npm test` runs
// the project `vmctl-maglev` too): test/riscv/nan-doublewords.test.ts (Maglev re-encodes NaNs).
// Vitest takes pool options from the root config only, so that project is the one using vmForks.
const MAGLEV = ['test/riscv/nan-doublewords.test.ts'];

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    poolOptions: { vmForks: { execArgv: ['--no-turbofan'] } },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [
      { extends: true, test: { name: 'vmctl', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...ALONE, ...MAGLEV] } },
      { extends: true, test: { name: 'vmctl-maglev', include: MAGLEV, pool: 'vmForks' } },
      { extends: true, test: { name: 'smp', include: ALONE, sequence: { groupOrder: 1 } } },
    ],
  },
});
