// Named points where the fault tests hold vmctl still, to SIGKILL the daemon at that very instant
// (test/e2e/crash-points.test.ts): with VMCTL_TEST_HOLD=POINT:FILE in the daemon's environment
// (its VM worker threads inherit it), reaching POINT creates FILE and waits for ever. Without the
// variable, or at any other point, a hold returns at once: nothing changes for users.

import { writeFileSync } from 'node:fs';

/** The points: where a daemon killed during `save` or `snapshot take` could leave damage. */
export type HoldPoint =
  /** A machine state file is half written: its header and machine section, no RAM or end yet. */
  | 'state-partly-written'
  /** `save`: the state is complete and renamed into place, but not yet recorded in state.json. */
  | 'save-before-record'
  /** `snapshot take`: the operation is recorded and the overlays made, the machine not switched. */
  | 'take-before-switch';

const NEVER = new Promise<never>(() => {});

/** Resolves at once unless the tests hold `point`: then it never does. */
export function holdAt(point: HoldPoint): Promise<void> {
  const spec = process.env.VMCTL_TEST_HOLD;
  if (!spec) return Promise.resolve();
  const colon = spec.indexOf(':');
  if (colon < 0 || spec.slice(0, colon) !== point) return Promise.resolve();
  writeFileSync(spec.slice(colon + 1), `${point} ${process.pid}\n`);
  return NEVER;
}
