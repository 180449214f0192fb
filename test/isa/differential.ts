// Differential testing of the hart: one guest program from fixtures/isa runs on QEMU 7.2 and on
// vmctl; console output and exit code must be the same. Where QEMU departs from the ratified
// specification, the program prints the behaviour on a line of its own, and the program's
// entry in programs.ts lists that line: QEMU's version is replaced by the spec's before
// comparing. The programs' own self-checks must pass on QEMU (exit code 0, or the code the
// program is meant to end with), so a fixture that expects the wrong thing is caught too.
// Every listed difference must occur in QEMU's output, so a stale entry fails the test.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { expect } from 'vitest';
import { requireQemu, runQemu, type QemuResult } from '../helpers/qemu.js';
import { runGuest } from '../helpers/run-guest.js';

export const ISA_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/isa');

export interface KnownDifference {
  /** A whole line of QEMU's output (string: exact; RegExp: must match the whole line). */
  qemu: string | RegExp;
  /** The line the spec requires instead (what vmctl must print); with a RegExp, a
   *  replacement pattern ($1, $2, ... refer to its groups). May hold several lines ("\n"),
   *  or be null: the line is one QEMU alone prints. */
  spec: string | null;
  /** Why: the spec section and what QEMU 7.2 does. */
  why: string;
}

export interface IsaProgram {
  name: string;
  /** virt: UART + test finisher. spike: HTIF (QEMU has HTIF only there; vmctl offers it on
   *  virt to ELF guests with a `tohost` symbol, so vmctl always runs the guest on virt). */
  machine?: 'virt' | 'spike';
  /** Harts on both sides (default 1). */
  cpus?: number;
  /** RAM on both sides (default 128 MiB, QEMU's default for virt). */
  memoryMiB?: number;
  timeoutMs?: number;
  /** The exit code the program ends with (default 0: all self-checks passed). */
  exitCode?: number;
  differences?: KnownDifference[];
}

export function elfPath(name: string): string {
  return join(ISA_DIR, 'bin', `${name}.elf`);
}

export function applyDifferences(qemuOut: string, diffs: KnownDifference[]): string {
  const lines: (string | null)[] = qemuOut.split('\n');
  for (const d of diffs) {
    let hits = 0;
    const re = typeof d.qemu === 'string' ? null : new RegExp(`^(?:${d.qemu.source})$`);
    for (let i = 0; i < lines.length; i++) {
      if (lines[i] === null) continue;
      if (re ? re.test(lines[i]!) : lines[i] === d.qemu) {
        lines[i] = d.spec === null ? null : re ? lines[i]!.replace(re, d.spec) : d.spec;
        hits++;
      }
    }
    if (hits === 0) {
      throw new Error(`known QEMU difference no longer seen in QEMU's output (update the list): ${String(d.qemu)} — ${d.why}`);
    }
  }
  return lines.filter((l) => l !== null).join('\n');
}

/** The first differing line with some context, or null when equal. */
export function firstDifference(expected: string, got: string): string | null {
  if (expected === got) return null;
  const a = expected.split('\n');
  const b = got.split('\n');
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const ctx = (lines: string[]) => lines.slice(Math.max(0, i - 3), i + 3).map((l, k) => `${Math.max(0, i - 3) + k + 1}: ${l}`).join('\n');
  return `first difference at line ${i + 1}\n--- expected (QEMU with spec corrections)\n${ctx(a)}\n--- vmctl\n${ctx(b)}`;
}

const qemuCache = new Map<string, Promise<QemuResult>>();

export function qemuRun(p: IsaProgram): Promise<QemuResult> {
  let r = qemuCache.get(p.name);
  if (!r) {
    requireQemu();
    r = runQemu(elfPath(p.name), { machine: p.machine ?? 'virt', cpus: p.cpus ?? 1, memoryMiB: p.memoryMiB ?? 128, timeoutMs: 30_000 });
    qemuCache.set(p.name, r);
  }
  return r;
}

/** Runs `p` on QEMU and on vmctl and asserts the same output and exit code. */
export async function differential(p: IsaProgram): Promise<void> {
  const elf = elfPath(p.name);
  expect(existsSync(elf), `${elf} is missing: run make -C fixtures/isa`).toBe(true);
  const q = await qemuRun(p);
  expect(q.timedOut, `QEMU timed out on ${p.name}; stderr: ${q.stderr}`).toBe(false);
  expect(q.exitCode, `QEMU did not exit normally on ${p.name}: ${q.signal ?? ''} ${q.stderr}`).toBe(p.exitCode ?? 0);
  // The program must have run to its end on QEMU (finisher guests print PASS or FAIL n last;
  // the HTIF guests a checksum line).
  expect(q.output).toMatch(p.machine === 'spike' ? /checksum [0-9a-f]{16}\n$/ : /(PASS|FAIL -?\d+)\n$/);
  const expected = applyDifferences(q.output, p.differences ?? []);

  const v = await runGuest({ kernelPath: elf, cpus: p.cpus ?? 1, memoryBytes: (p.memoryMiB ?? 128) * 1024 * 1024 },
    { timeoutMs: p.timeoutMs ?? 60_000 });
  const diff = firstDifference(expected, v.output);
  expect(diff, diff ?? '').toBeNull();
  expect(v.timedOut).toBe(false);
  expect(v.power?.kind).toBe('poweroff');
  if (v.power?.kind === 'poweroff') {
    expect(v.power.code).toBe(q.exitCode);
    expect(v.power.source).toBe(p.machine === 'spike' ? 'htif' : 'test-finisher');
  }
}
