// Runs a guest on a VirtMachine inside the test process (no daemon, no worker): the way ISA, FP,
// board tests and the benchmark run guests. Sleeps like the real runtime when all harts wait
// in WFI, so timer-driven guests behave as under `vmctl run`. With `threads`, harts 1..N-1 run on
// hart threads as in a VM's worker (the built dist/hart-worker.js: run `npm run build` first).
import { VirtMachine } from '../../src/board/virt.js';
import { hartThreads } from '../../src/vm/hart-threads.js';
import type { MachineConfig, NicAttachment, PowerEvent } from '../../src/board/machine-types.js';
import type { NetBackend } from '../../src/net/nic.js';
import type { JitStats } from '../../src/riscv/jit.js';

export interface RunGuestResult {
  /** Everything the guest wrote to its console (UART, SBI or HTIF), decoded as latin1. */
  output: string;
  power: PowerEvent | null;
  instret: number;
  timedOut: boolean;
  /** The translators' figures over all harts (VirtMachine.jitStats). */
  jit: JitStats;
}

export interface RunGuestOptions {
  timeoutMs: number;
  /** Console input, given to the UART before the guest starts (it queues it). */
  input?: string | Uint8Array;
  /** Feeds console input when `output` first contains `when` (e.g. a shell prompt). */
  script?: { when: string | RegExp; send: string }[];
  /** Called with console output as it arrives (e.g. to echo it while debugging). */
  onOutput?: (text: string) => void;
  /** Harts 1..N-1 on threads of their own (src/board/smp.ts), as the VM worker runs them. */
  threads?: boolean;
  /** The host side of the config's NICs (without it they are unplugged). */
  openNic?: (index: number, nic: NicAttachment) => NetBackend;
  /** Log lines of the machine (device errors). */
  onLog?: (message: string) => void;
}

export const HART_WORKER = new URL('../../dist/hart-worker.js', import.meta.url);

/** Partial configs are completed with small defaults (128 MiB, 1 hart, no firmware). */
export type GuestConfig = Partial<MachineConfig> & Pick<MachineConfig, 'kernelPath'> | MachineConfig;

export async function runGuest(cfg: GuestConfig, opts: RunGuestOptions): Promise<RunGuestResult> {
  const full: MachineConfig = {
    memoryBytes: 128 * 1024 * 1024,
    cpus: 1,
    firmware: { kind: 'none' },
    cmdline: '',
    disks: [],
    ...cfg,
  };
  const chunks: string[] = [];
  let text = '';
  let power: PowerEvent | null = null;
  const decoder = new TextDecoder('latin1');
  let wake: (() => void) | null = null;
  const vm = VirtMachine.create(full, {
    openNic: opts.openNic,
    wake: () => wake?.(),
    consoleOutput(bytes) {
      const s = decoder.decode(bytes);
      chunks.push(s);
      text += s;
      opts.onOutput?.(s);
    },
    powerEvent(ev) { power ??= ev; },
    log(m) { if (opts.threads) chunks.push(`[log] ${m}\n`); opts.onLog?.(m); },
  }, opts.threads ? hartThreads(HART_WORKER) : undefined);
  // Hart threads (an interrupt for hart 0) and the network (a frame) end an idle sleep early.
  vm.onWake = () => { wake?.(); };
  if (opts.input !== undefined) {
    vm.consoleInput(typeof opts.input === 'string' ? new TextEncoder().encode(opts.input) : opts.input);
  }
  const script = [...(opts.script ?? [])];
  const deadline = performance.now() + opts.timeoutMs;
  let timedOut = false;
  let jit: JitStats;
  try {
    for (;;) {
      while (script.length > 0) {
        const { when, send } = script[0];
        const hit = typeof when === 'string' ? text.includes(when) : when.test(text);
        if (!hit) break;
        script.shift();
        text = ''; // the next trigger must appear after this point
        vm.consoleInput(new TextEncoder().encode(send));
      }
      const left = deadline - performance.now();
      if (left <= 0) { timedOut = true; break; }
      const state = vm.run(Math.min(50, left));
      if (state === 'halted') break;
      if (state === 'idle') {
        const wait = Math.min(vm.idleTimeoutMs(), deadline - performance.now(), 50);
        if (wait > 0) {
          // A frame from the network ends the sleep early, as in the real run loop.
          await new Promise<void>((r) => {
            const t = setTimeout(() => { wake = null; r(); }, wait);
            wake = () => { clearTimeout(t); wake = null; r(); };
          });
        }
      } else {
        // let timers and I/O of the test process run now and then
        await new Promise((r) => setImmediate(r));
      }
    }
  } finally {
    jit = vm.jitStats();
    vm.close();
  }
  return { output: chunks.join(''), power, instret: vm.instructionsRetired(), timedOut, jit };
}
