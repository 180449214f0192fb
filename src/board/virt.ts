// The virt board: QEMU 7.2's `-machine virt` for RV64 (hw/riscv/virt.c), assembled from our
// devices and harts. The runtime (src/vm) drives it with run(budgetMs) from one thread; all harts
// share that thread, round-robin in slices of instructions.
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
import { CHUNK_SIZE, GuestRam, type ChunkBudget } from '../memory/ram.js';
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
import { VirtioBalloonSlot, type BalloonFigures } from '../devices/virtio/balloon-slot.js';
import { planVirtioSlots } from './virtio-slots.js';
import type { MachineConfig, MachineHost, PowerEvent } from './machine-types.js';
import { buildDeviceTree } from './device-tree.js';
import { BootRom, buildBootRom } from './boot-rom.js';
import { loadImage, LoadError, type LoadedImage } from './loader.js';
import { fdtLoadAddress, initrdLoadAddress, kernelLoadAddress } from './boot-layout.js';
import { Htif } from './htif.js';
import { BuiltinSbi } from './sbi/builtin-sbi.js';
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
  /** The virtio-balloon, when the definition has one. */
  readonly balloon: VirtioBalloonSlot | null = null;
  private htif: Htif | null = null;
  private firmwareImage: LoadedImage | null = null;
  private sbi: BuiltinSbi | null = null;
  private halted = false;
  private clockPaused = false;
  private nextHart = 0;

  private constructor(readonly config: MachineConfig, private readonly host: MachineHost, budget: ChunkBudget | null) {
    if (!Number.isInteger(config.cpus) || config.cpus < 1 || config.cpus > MAX_CPUS) {
      throw new RangeError(`cpus must be 1..${MAX_CPUS}, got ${config.cpus}`);
    }
    // RAM is made of 2 MiB chunks; a size that is not a multiple gets its last chunk in full,
    // but the guest is only told about (and only loads into) memoryBytes.
    this.ram = new GuestRam(DRAM_BASE, Math.ceil(config.memoryBytes / CHUNK_SIZE) * CHUNK_SIZE);
    this.ram.budget = budget;
    this.mem = new PhysicalMemoryMap(this.ram);
    const reservations = new ReservationSet();
    for (let i = 0; i < config.cpus; i++) this.harts.push(new Hart(i, this.mem, this.clock, reservations));

    const hartIrq = (hart: number, bit: number, level: boolean) => this.harts[hart].setInterruptLevel(bit, level);
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
    } catch (e) {
      this.close(); // release the disk images opened so far (locks, file handles)
      throw e;
    }
    this.clock.resume();
  }

  /** `budget`: where host memory for RAM chunks comes from (the daemon's ledger, src/vm). */
  static create(cfg: MachineConfig, host: MachineHost, budget: ChunkBudget | null = null): VirtMachine {
    return new VirtMachine(cfg, host, budget);
  }

  /** The 8 virtio-mmio slots. THE place where devices are plugged in, as virtio-slots.ts plans
   *  them: disks from slot 0 up (H5's virtio-blk over the virtio-mmio transport), the balloon in
   *  the highest slot left; the remaining slots stay empty. */
  private attachVirtioSlots(): void {
    const plan = planVirtioSlots(this.config.disks.length, this.config.balloon !== undefined);
    for (let i = 0; i < VIRTIO_COUNT; i++) {
      const base = VIRTIO_BASE + i * VIRTIO_SIZE;
      const irq = (l: boolean): void => this.plic.setLevel(VIRTIO_IRQ + i, l);
      let device: MmioDevice = new EmptyVirtioSlot();
      const use = plan[i];
      if (use?.kind === 'disk') {
        const slot = new VirtioBlkSlot({ disk: this.config.disks[use.index], ram: this.ram, base, irq, log: (m) => this.host.log(m) });
        this.closers.push(() => slot.close());
        device = slot.device;
      } else if (use?.kind === 'balloon') {
        const slot = new VirtioBalloonSlot({
          settings: this.config.balloon!, ram: this.ram, guestBytes: this.config.memoryBytes, base, irq,
          dropChunk: (c) => this.releaseChunk(c), log: (m) => this.host.log(m),
        });
        (this as { balloon: VirtioBalloonSlot | null }).balloon = slot;
        this.closers.push(() => slot.close());
        device = slot.device;
      }
      this.mem.addDevice(base, VIRTIO_SIZE, `virtio-mmio@${base.toString(16)}`, device);
    }
  }

  /** Drops RAM chunk `index` (every page of it given up through the balloon): first every hart
   *  forgets its views of it and the code translated from it, then the RAM lets it go, so
   *  nothing keeps the host memory alive; the guest reads zeros there from now on. */
  releaseChunk(index: number): void {
    const pa = this.ram.base + index * CHUNK_SIZE;
    for (const h of this.harts) h.dropRam(pa, CHUNK_SIZE);
    this.ram.release(index);
    this.host.memoryReleased?.();
  }

  /** Moves the balloon so that the guest keeps `bytes` of its memory (no-op without a balloon). */
  setMemoryTarget(bytes: number): void {
    this.balloon?.setTarget(bytes);
  }

  /** Host memory held for guest RAM and the balloon's figures (null without a balloon). */
  memoryFigures(): { residentBytes: number; chunksAllocated: number; chunksReleased: number; balloon: BalloonFigures | null; sentAt: number } {
    return {
      sentAt: performance.now(),
      residentBytes: this.ram.allocatedBytes(),
      chunksAllocated: this.ram.chunksAllocated,
      chunksReleased: this.ram.chunksReleased,
      balloon: this.balloon?.figures() ?? null,
    };
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
      this.mem.addDevice(BOOT_ROM_BASE, BOOT_ROM_SIZE, 'boot-rom', new BootRom(park, BOOT_ROM_SIZE));
      this.sbi = new BuiltinSbi({
        harts: this.harts,
        putchar: (b) => this.out.push(b),
        getchar: () => ((this.uart.read(5, 1) & 1) ? this.uart.read(0, 1) : -1),
        power: (ev) => this.power(ev),
        trapSink: BOOT_ROM_BASE,
        ramBase: DRAM_BASE,
        ramSize: cfg.memoryBytes,
      });
      this.sbi.boot(kernel!.entry, fdtAddr);
    } else {
      const startAddr = fw.kind === 'file' ? DRAM_BASE : kernel!.entry;
      const rom = buildBootRom({ startAddr, fdtAddr, nextAddr: kernel ? kernel.entry : KERNEL_BASE_WITH_FIRMWARE });
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
    const deadline = performance.now() + budgetMs;
    const harts = this.harts;
    const n = harts.length;
    try {
      for (;;) {
        this.pollTimers();
        let active = 0;
        for (let k = 0; k < n && !this.halted; k++) {
          const h = harts[(this.nextHart + k) % n];
          if (h.halted) continue;
          h.run(SLICE);
          if (this.sbi !== null && h.mode === 3) this.builtinTrapped(h);
          if (!h.waiting && !h.halted) active++;
        }
        this.nextHart = (this.nextHart + 1) % n;
        if (this.halted) return 'halted';
        if (active === 0) {
          // Everyone waits (WFI, or stopped): unless a timer is already due, the VM is idle.
          this.pollTimers();
          if (!this.anyHartRunnable()) return 'idle';
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
    if (this.halted) return Infinity;
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

  pauseClock(): void { this.clockPaused = true; this.clock.pause(); }
  resumeClock(): void { this.clockPaused = false; this.clock.resume(); }

  instructionsRetired(): number {
    let n = 0;
    for (const h of this.harts) n += h.instret;
    return n;
  }

  dtb(): Uint8Array { return this.dtbBytes; }

  close(): void {
    this.flushOutput();
    for (const c of this.closers.splice(0)) c();
  }
}
