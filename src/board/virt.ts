// The virt board: QEMU 7.2's `-machine virt` for RV64 (hw/riscv/virt.c), assembled from our
// devices and harts. The runtime (src/vm) drives it with run(budgetMs) from one thread. Given a
// way to start threads (`threads`), a machine with several harts runs harts 1..N-1 in parallel
// on threads of their own (smp.ts, docs/harts.md) while hart 0 and every device stay on this
// thread; without one, all harts share this thread, round-robin in slices of instructions.
//
// Boot, as on QEMU (hw/riscv/boot.c):
//   firmware file  loaded at 0x80000000; kernel (if any) at the next 2 MiB boundary after it
//                  (0x80200000 for OpenSBI); every hart starts in the boot ROM at 0x1000 with
//                  a0 = hartid, a1 = device tree, a2 = fw_dynamic_info, and jumps to 0x80000000.
//   builtin        our SBI (sbi/builtin-sbi.ts) plays the firmware; the kernel loads at 0x80200000
//                  and hart 0 starts there in S-mode (a0 = 0, a1 = device tree); the other harts
//                  wait for SBI HSM hart_start.
//   none           the kernel (ELF at its own addresses, anything else at 0x80000000) starts in
//                  M-mode through the boot ROM on every hart.
// The device tree goes to the top 2 MiB-aligned spot below min(RAM end, 3 GiB), the initrd at
// kernel + min(RAM/2, 128 MiB) (riscv_load_initrd): see boot-layout.ts.

import { readFileSync } from 'node:fs';
import { CHUNK_SIZE, GuestRam } from '../memory/ram.js';
import { PhysicalMemoryMap, type MmioDevice } from '../memory/bus.js';
import { Hart } from '../riscv/hart.js';
import { ReservationSet } from '../riscv/reservations.js';
import { VirtClock } from '../devices/clock.js';
import { Clint } from '../devices/clint.js';
import { Plic } from '../devices/plic.js';
import { Uart16550 } from '../devices/uart16550.js';
import { GoldfishRtc } from '../devices/goldfish-rtc.js';
import { TestFinisher } from '../devices/test-finisher.js';
import { EmptyVirtioSlot } from '../devices/virtio-mmio-empty.js';
import { VirtioBlkSlot } from '../devices/virtio/blk-slot.js';
import type { MachineConfig, MachineHost, PowerEvent } from './machine-types.js';
import { buildDeviceTree } from './device-tree.js';
import { BootRom, buildBootRom } from './boot-rom.js';
import { loadImage, LoadError, type LoadedImage } from './loader.js';
import { fdtLoadAddress, initrdLoadAddress, kernelLoadAddress } from './boot-layout.js';
import { Htif } from './htif.js';
import { BuiltinSbi } from './sbi/builtin-sbi.js';
import { SharedHarts, SmpHost, type CpuGate, type StartHartThread } from './smp.js';
import { HSM, HSM_STOPPED } from './hart-control.js';
import {
  BOOT_ROM_BASE, BOOT_ROM_SIZE, CLINT_BASE, CLINT_SIZE, DRAM_BASE, KERNEL_BASE_WITH_FIRMWARE, MAX_CPUS,
  PLIC_BASE, PLIC_SIZE, RTC_BASE, RTC_IRQ, RTC_SIZE, TEST_BASE, TEST_SIZE, UART0_BASE, UART0_IRQ, UART0_SIZE,
  VIRTIO_BASE, VIRTIO_COUNT, VIRTIO_IRQ, VIRTIO_SIZE,
} from './memory-map.js';

const MiB = 1024 * 1024;
/** Instructions a hart runs before the next one gets its turn (and timers are re-checked). */
const SLICE = 20_000;

export type RunState = 'running' | 'idle' | 'halted';

export class VirtMachine {
  readonly ram: GuestRam;
  readonly mem: PhysicalMemoryMap;
  readonly clock = new VirtClock();
  readonly harts: Hart[] = [];
  readonly clint: Clint;
  readonly plic: Plic;
  readonly uart: Uart16550;
  readonly rtc: GoldfishRtc;
  private readonly dtbBytes: Uint8Array;
  private readonly out: number[] = [];
  private readonly closers: (() => void)[] = [];
  private htif: Htif | null = null;
  private firmwareImage: LoadedImage | null = null;
  private sbi: BuiltinSbi | null = null;
  private halted = false;
  private clockPaused = false;
  private nextHart = 0;
  /** Harts 1..N-1 on threads of their own (null: every hart runs on this thread). */
  private readonly smp: SmpHost | null = null;
  /** The boot ROM's image (hart threads get a copy). */
  private romImage: Uint8Array = new Uint8Array(0);
  /** Called when something happened that the runtime should look at soon (a hart thread's
   *  device access or request, while this thread may be idle). */
  onWake: () => void = () => {};
  /** The host CPU allowance of this thread's harts (null: unlimited), and how long run() was
   *  held back by it (ms to wait, 0 = not held). */
  private readonly gate: CpuGate | null;
  private throttledMs = 0;
  private gateIdle = false;

  private constructor(readonly config: MachineConfig, private readonly host: MachineHost, threads?: StartHartThread, gate?: CpuGate) {
    this.gate = gate ?? null;
    if (!Number.isInteger(config.cpus) || config.cpus < 1 || config.cpus > MAX_CPUS) {
      throw new RangeError(`cpus must be 1..${MAX_CPUS}, got ${config.cpus}`);
    }
    // RAM is made of 2 MiB chunks; a size that is not a multiple gets its last chunk in full,
    // but the guest is only told about (and only loads into) memoryBytes.
    this.ram = new GuestRam(DRAM_BASE, Math.ceil(config.memoryBytes / CHUNK_SIZE) * CHUNK_SIZE);
    this.mem = new PhysicalMemoryMap(this.ram);
    const reservations = new ReservationSet(config.cpus);
    if (threads && config.cpus > 1) {
      // Every thread must see the same chunks: make them all now (untouched pages cost nothing).
      this.ram.allocateAll();
      this.smp = new SmpHost({
        harts: config.cpus, regions: () => this.mem.listDevices(), mem: this.mem,
        putchar: (b) => this.out.push(b), power: (ev) => this.power(ev), log: (m) => this.host.log(m),
        wake: () => this.onWake(),
      });
      const h0 = new Hart(0, this.mem, this.clock, reservations);
      h0.smp = true;
      this.harts.push(h0);
    } else {
      for (let i = 0; i < config.cpus; i++) this.harts.push(new Hart(i, this.mem, this.clock, reservations));
    }

    const smp = this.smp;
    const hartIrq = (hart: number, bit: number, level: boolean) => {
      if (smp !== null && hart !== 0) smp.setLine(hart, bit, level);
      else this.harts[hart].setInterruptLevel(bit, level);
    };
    this.clint = new Clint(config.cpus, this.clock, hartIrq);
    this.plic = new Plic(config.cpus, hartIrq);
    this.uart = new Uart16550((b) => this.out.push(b), (l) => this.plic.setLevel(UART0_IRQ, l), this.clock);
    this.rtc = new GoldfishRtc((l) => this.plic.setLevel(RTC_IRQ, l));
    const finisher = new TestFinisher((ev) => this.power(
      ev.kind === 'reset'
        ? { kind: 'reset', source: 'test-finisher' }
        : { kind: 'poweroff', code: ev.code, source: 'test-finisher', failed: ev.kind === 'fail' }));

    this.mem.addDevice(TEST_BASE, TEST_SIZE, 'test-finisher', finisher);
    this.mem.addDevice(RTC_BASE, RTC_SIZE, 'rtc', this.rtc);
    this.mem.addDevice(CLINT_BASE, CLINT_SIZE, 'clint', this.clint);
    this.mem.addDevice(PLIC_BASE, PLIC_SIZE, 'plic', this.plic);
    this.mem.addDevice(UART0_BASE, UART0_SIZE, 'uart0', this.uart);
    try {
      this.attachVirtioSlots();
      this.dtbBytes = this.load();
      if (this.smp && threads) this.startHartThreads(threads, reservations);
    } catch (e) {
      this.close(); // release the disk images opened so far (locks, file handles)
      throw e;
    }
    // With hart threads, time starts when they are all up (run()).
    if (this.smp === null) this.clock.resume();
  }

  /** `threads`: how to start a thread for a hart (src/vm gives worker threads); without it, every
   *  hart runs on the calling thread. */
  static create(cfg: MachineConfig, host: MachineHost, threads?: StartHartThread, gate?: CpuGate): VirtMachine {
    return new VirtMachine(cfg, host, threads, gate);
  }

  private startHartThreads(threads: StartHartThread, reservations: ReservationSet): void {
    const smp = this.smp!;
    const h0 = this.harts[0];
    smp.start(threads, {
      ramBase: this.ram.base, ramSize: this.ram.size,
      memories: this.ram.memories() as WebAssembly.Memory[],
      clock: this.clock.sharedState,
      reservations: reservations.sharedBuffer,
      regions: this.mem.listDevices().map((r) => ({ base: r.base, size: r.size, name: r.name, rom: r.base === BOOT_ROM_BASE ? this.romImage : undefined })),
      watched: this.htif ? [{ base: this.htif.tohost, size: 8 }] : [],
      builtinSbi: this.sbi ? { trapSink: BOOT_ROM_BASE, uartBase: UART0_BASE } : null,
      bootPc: BOOT_ROM_BASE,
      jit: h0.jitEnabled,
    });
  }

  /** The 8 virtio-mmio slots. THE place where disks are plugged in: slot i <- config.disks[i]
   *  (H5's virtio-blk over the virtio-mmio transport); the remaining slots stay empty. */
  private attachVirtioSlots(): void {
    if (this.config.disks.length > VIRTIO_COUNT) {
      throw new RangeError(`at most ${VIRTIO_COUNT} disks fit the virt board's virtio-mmio slots, got ${this.config.disks.length}`);
    }
    for (let i = 0; i < VIRTIO_COUNT; i++) {
      const base = VIRTIO_BASE + i * VIRTIO_SIZE;
      let device: MmioDevice = new EmptyVirtioSlot();
      const disk = this.config.disks[i];
      if (disk) {
        const slot = new VirtioBlkSlot({
          disk, ram: this.ram, base, irq: (l) => this.plic.setLevel(VIRTIO_IRQ + i, l), log: (m) => this.host.log(m),
        });
        this.closers.push(() => slot.close());
        device = slot.device;
      }
      this.mem.addDevice(base, VIRTIO_SIZE, `virtio-mmio@${base.toString(16)}`, device);
    }
  }

  /** Loads firmware, kernel, initrd and device tree; sets the harts' start state. Returns the DTB. */
  private load(): Uint8Array {
    const cfg = this.config;
    const fw = cfg.firmware;
    const read = (path: string, what: string) => {
      try { return new Uint8Array(readFileSync(path)); } catch (e) {
        throw new LoadError(path, `cannot read ${what}: ${(e as Error).message}`);
      }
    };

    let firmwareEnd = DRAM_BASE;
    if (fw.kind === 'file') {
      const img = loadImage(this.ram, fw.path, read(fw.path, 'firmware'), DRAM_BASE);
      this.firmwareImage = img;
      firmwareEnd = img.end;
      this.watchHtif(img);
    }
    let kernel: LoadedImage | null = null;
    if (cfg.kernelPath) {
      const at = kernelLoadAddress(fw.kind, firmwareEnd);
      kernel = loadImage(this.ram, cfg.kernelPath, read(cfg.kernelPath, 'kernel'), at);
      this.watchHtif(kernel);
    } else if (fw.kind !== 'file') {
      throw new LoadError('(config)', fw.kind === 'builtin'
        ? 'firmware "builtin" needs a kernel to start' : 'nothing to boot: no firmware and no kernel');
    }

    for (const img of [kernel, this.firmwareImage]) {
      if (img && img.end > DRAM_BASE + cfg.memoryBytes) {
        throw new LoadError(img === kernel ? cfg.kernelPath! : (fw as { path: string }).path,
          `needs RAM up to 0x${img.end.toString(16)}, more than the ${cfg.memoryBytes / MiB} MiB configured`);
      }
    }

    let initrd: { start: number; end: number } | undefined;
    if (cfg.initrdPath) {
      if (!kernel) throw new LoadError(cfg.initrdPath, 'an initrd needs a kernel');
      const data = read(cfg.initrdPath, 'initrd');
      const start = initrdLoadAddress(kernel.entry, cfg.memoryBytes);
      if (start + data.length > DRAM_BASE + cfg.memoryBytes) {
        throw new LoadError(cfg.initrdPath, `initrd (${data.length} bytes) does not fit in RAM at 0x${start.toString(16)}`);
      }
      this.ram.write(start, data);
      initrd = { start, end: start + data.length };
    }

    const dtb = buildDeviceTree({ cpus: cfg.cpus, memoryBytes: cfg.memoryBytes, bootargs: cfg.cmdline, initrd });
    const fdtAddr = fdtLoadAddress(cfg.memoryBytes, dtb.length);
    if (fdtAddr < DRAM_BASE || (kernel && fdtAddr < kernel.end) || (initrd && fdtAddr < initrd.end)) {
      throw new LoadError('(config)', `not enough memory (${cfg.memoryBytes / MiB} MiB) for kernel, initrd and device tree`);
    }
    this.ram.write(fdtAddr, dtb);

    if (fw.kind === 'builtin') {
      // No M-mode code runs with the builtin SBI; mtvec points at a `j .` in the ROM so that an
      // unexpected M-mode trap parks the hart where run() notices it (see checkBuiltinTrap).
      const park = new Uint8Array([0x6f, 0x00, 0x00, 0x00]);
      this.romImage = park;
      this.mem.addDevice(BOOT_ROM_BASE, BOOT_ROM_SIZE, 'boot-rom', new BootRom(park, BOOT_ROM_SIZE));
      const smp = this.smp;
      if (smp) for (let h = 0; h < cfg.cpus; h++) smp.control.store(h, HSM, HSM_STOPPED);
      const h0 = this.harts[0];
      this.sbi = new BuiltinSbi({
        harts: smp ? new SharedHarts(smp.control, h0, () => {}, () => smp.beforeHart0(h0)) : this.harts,
        putchar: (b) => this.out.push(b),
        getchar: () => ((this.uart.read(5, 1) & 1) ? this.uart.read(0, 1) : -1),
        power: (ev) => this.power(ev),
        trapSink: BOOT_ROM_BASE,
        ramBase: DRAM_BASE,
        ramSize: cfg.memoryBytes,
      });
      if (smp) this.sbi.attach(h0);
      this.sbi.boot(kernel!.entry, fdtAddr);
    } else {
      const startAddr = fw.kind === 'file' ? DRAM_BASE : kernel!.entry;
      const rom = buildBootRom({ startAddr, fdtAddr, nextAddr: kernel ? kernel.entry : KERNEL_BASE_WITH_FIRMWARE });
      this.romImage = rom;
      this.mem.addDevice(BOOT_ROM_BASE, BOOT_ROM_SIZE, 'boot-rom', new BootRom(rom, BOOT_ROM_SIZE));
      for (const h of this.harts) h.setPc(BOOT_ROM_BASE);
    }
    return dtb;
  }

  private watchHtif(img: LoadedImage): void {
    if (img.tohost === undefined || this.htif) return;
    this.htif = new Htif(this.ram, img.tohost, img.fromhost, (b) => this.out.push(b), (code) =>
      this.power({ kind: 'poweroff', code: code & 0xff, source: 'htif', failed: code !== 0 }));
    this.mem.watchWrites(img.tohost, 8, (paddr, size) => this.htif!.onWrite(paddr, size));
  }

  private power(ev: PowerEvent): void {
    if (this.halted) return;
    this.halted = true;
    // Stop at once: the instruction that powered off is the last one any hart retires (an SBI
    // SRST call must not return to the kernel, which would report it as failed).
    for (const h of this.harts) h.stopRequested = true;
    this.smp?.stopHarts();
    this.flushOutput();
    this.host.powerEvent(ev);
  }

  private flushOutput(): void {
    if (this.out.length === 0) return;
    const bytes = Uint8Array.from(this.out);
    this.out.length = 0;
    this.host.consoleOutput(bytes);
  }

  /** Timers are continuous in hardware; we re-evaluate them between slices. */
  private pollTimers(): void {
    this.clint.update();
    this.rtc.poll();
    this.uart.poll();
  }

  run(budgetMs: number): RunState {
    if (this.halted) return 'halted';
    const smp = this.smp;
    if (smp !== null) {
      if (smp.failed !== null) throw new Error(smp.failed);
      if (!smp.running) {
        if (!smp.tryStart()) return 'idle'; // hart threads still starting: their message wakes us
        if (!this.clockPaused) this.clock.resume();
      }
    }
    const deadline = performance.now() + budgetMs;
    const harts = this.harts;
    const n = harts.length;
    const gate = this.gate;
    this.throttledMs = 0;
    try {
      for (;;) {
        this.pollTimers();
        let active = 0;
        if (smp !== null) smp.hart0Running(true, harts[0]);
        for (let k = 0; k < n && !this.halted; k++) {
          const h = harts[(this.nextHart + k) % n];
          if (smp !== null) smp.beforeHart0(h);
          if (h.halted) continue;
          if (gate !== null && !h.waiting) {
            // This thread's host CPU allowance (the daemon's scheduler): used up, it waits
            // (devices keep being served meanwhile).
            if (this.gateIdle) { this.gateIdle = false; gate.idle(false); }
            const w = gate.wait();
            if (w > 0) {
              this.throttledMs = w;
              if (smp !== null) smp.hart0Running(false, harts[0]);
              return 'idle';
            }
            const t0 = performance.now();
            h.run(SLICE);
            gate.ran(performance.now() - t0);
          } else h.run(SLICE);
          if (this.sbi !== null && h.mode === 3) this.builtinTrapped(h);
          if (!h.waiting && !h.halted) active++;
        }
        this.nextHart = (this.nextHart + 1) % n;
        if (this.halted) return 'halted';
        if (active === 0) {
          // Everyone waits (WFI, or stopped): unless a timer is already due, the VM is idle.
          this.pollTimers();
          if (smp !== null) smp.beforeHart0(harts[0]);
          if (!this.anyHartRunnable()) {
            if (smp !== null) smp.hart0Running(false, harts[0]);
            if (gate !== null && !this.gateIdle) { this.gateIdle = true; gate.idle(true); }
            return 'idle';
          }
        }
        if (performance.now() >= deadline) return 'running';
      }
    } finally {
      this.flushOutput();
    }
  }

  /** With the builtin SBI nothing may trap into M-mode: report it and stop the machine. */
  private builtinTrapped(h: Hart): void {
    const hex = (n: number) => `0x${(h.readCsr(n) ?? 0n).toString(16)}`;
    this.host.log(`hart ${h.hartId}: unexpected trap into M-mode under the builtin SBI ` +
      `(mcause ${hex(0x342)}, mepc ${hex(0x341)}, mtval ${hex(0x343)})`);
    this.power({ kind: 'poweroff', code: 255, source: 'other', failed: true });
  }

  private anyHartRunnable(): boolean {
    for (const h of this.harts) if (!h.halted && !h.waiting) return true;
    return false;
  }

  /** When idle: ms until a timer could wake a hart (CLINT mtimecmp, Sstc stimecmp, RTC alarm,
   *  the UART's character timeout). */
  idleTimeoutMs(): number {
    if (this.halted || (this.smp !== null && !this.smp.running)) return Infinity;
    if (this.throttledMs > 0) return this.throttledMs; // held back by the CPU allowance
    if (this.anyHartRunnable()) return 0;
    let t = Math.min(this.clock.msUntil(this.clint.nextDeadline()), this.clock.msUntil(this.uart.nextDeadline()));
    for (const h of this.harts) {
      if (h.halted) continue;
      const s = h.nextTimerEvent();
      if (s < Infinity) t = Math.min(t, this.clock.msUntil(s));
    }
    t = Math.min(t, this.rtc.msUntilAlarm());
    if (this.clockPaused && t !== 0) return Infinity;
    return t;
  }

  consoleInput(bytes: Uint8Array): void {
    this.uart.receive(bytes);
  }

  /** Pause: hart threads are held (within a slice) before the clock stops. */
  pauseClock(): void {
    if (this.smp?.running && !this.smp.hold(1000)) this.host.log('pause: a hart thread did not stop within 1 s');
    this.clockPaused = true;
    this.clock.pause();
  }
  /** Flow control (the runtime holds a VM whose output cannot be delivered): hart threads are
   *  held too; the clock runs on. */
  holdHarts(on: boolean): void {
    if (!this.smp?.running) return;
    if (on) this.smp.hold(1000);
    else this.smp.release();
  }

  resumeClock(): void {
    this.clockPaused = false;
    if (this.smp && !this.smp.running) return; // run() starts the clock once the hart threads are up
    this.clock.resume();
    this.smp?.release();
  }

  instructionsRetired(): number {
    return this.hartInstructions().reduce((a, b) => a + b, 0);
  }

  /** Instructions retired per hart, by hart id. */
  hartInstructions(): number[] {
    const smp = this.smp;
    return Array.from({ length: this.config.cpus }, (_, i) => (smp !== null && i > 0 ? smp.instret(i) : this.harts[i].instret));
  }

  dtb(): Uint8Array { return this.dtbBytes; }

  close(): void {
    this.smp?.close();
    this.flushOutput();
    for (const c of this.closers.splice(0)) c();
  }
}
