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

import { randomBytes } from 'node:crypto';
import { CHUNK_SIZE, GuestRam, type ChunkBudget } from '../memory/ram.js';
import { FileRefused, withRegular } from '../host/regular-file.js';
import { PhysicalMemoryMap, type MmioDevice } from '../memory/bus.js';
import { Hart, type HartState } from '../riscv/hart.js';
import { ReservationSet } from '../riscv/reservations.js';
import { JitStats } from '../riscv/jit.js';
import { VirtClock } from '../devices/clock.js';
import { Clint } from '../devices/clint.js';
import { Plic } from '../devices/plic.js';
import { Uart16550 } from '../devices/uart16550.js';
import { GoldfishRtc } from '../devices/goldfish-rtc.js';
import { TestFinisher } from '../devices/test-finisher.js';
import { EmptyVirtioSlot } from '../devices/virtio-mmio-empty.js';
import { VirtioBlkSlot } from '../devices/virtio/blk-slot.js';
import type { DiskIo } from '../devices/virtio/blk.js';
import { VirtioMmioDevice } from '../devices/virtio/mmio.js';
import { VirtioNetSlot } from '../devices/virtio/net-slot.js';
import { parseMac } from '../net/mac.js';
import { UnpluggedBackend } from '../net/nic.js';
import type { BlockBackend } from '../disk/block-backend.js';
import type { BoardShape, MachineConfig, MachineHost, MachineState, PowerEvent } from './machine-types.js';
import { VirtioBalloonSlot, type BalloonFigures } from '../devices/virtio/balloon-slot.js';
import { planVirtioSlots } from './virtio-slots.js';
import { buildDeviceTree } from './device-tree.js';
import { BootRom, buildBootRom } from './boot-rom.js';
import { loadImage, loadRaw, LoadError, type ImageFile, type LoadedImage } from './loader.js';
import { fdtLoadAddress, initrdLoadAddress, kernelLoadAddress } from './boot-layout.js';
import { Htif } from './htif.js';
import { BuiltinSbi } from './sbi/builtin-sbi.js';
import { POLLING_REST_MS, SharedHarts, SmpHost, type CpuGate, type StartHartThread } from './smp.js';
import { HSM, HSM_STARTED, HSM_STOPPED } from './hart-control.js';
import {
  BOOT_ROM_BASE, BOOT_ROM_SIZE, CLINT_BASE, CLINT_SIZE, DRAM_BASE, KERNEL_BASE_WITH_FIRMWARE, MAX_CPUS,
  PLIC_BASE, PLIC_SIZE, RTC_BASE, RTC_IRQ, RTC_SIZE, TEST_BASE, TEST_SIZE, UART0_BASE, UART0_IRQ, UART0_SIZE,
  VIRTIO_BASE, VIRTIO_COUNT, VIRTIO_IRQ, VIRTIO_SIZE,
} from './memory-map.js';

const MiB = 1024 * 1024;
/** Instructions a hart runs before the next one gets its turn (and timers are re-checked). */
const SLICE = 20_000;

export type RunState = 'running' | 'idle' | 'halted';

/** What the host allows a machine: `gate`, the CPU allowance of this thread's harts (the daemon's
 *  scheduler, src/vm/cpu-slots.ts; none: unlimited); `budget`, where host memory for RAM chunks
 *  comes from (the daemon's ledger, src/vm/memory-budget.ts; none: chunks are simply allocated). */
export interface MachineRuntime {
  readonly gate?: CpuGate;
  readonly budget?: ChunkBudget | null;
}

let zeroChunk: Uint8Array | null = null;
function isZeroChunk(c: Uint8Array): boolean {
  zeroChunk ??= new Uint8Array(CHUNK_SIZE);
  return Buffer.from(c.buffer, c.byteOffset, c.byteLength).equals(zeroChunk);
}

/** A saved machine state that does not fit the machine (another memory size, disk set, ...). */
export class MachineStateMismatch extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MachineStateMismatch';
  }
}

const sizeText = (b: number): string => (b % MiB === 0 ? `${b / MiB} MiB` : `${b} bytes`);

/** What differs between a saved board and this one, in words; null when they match. */
export function describeMismatch(saved: BoardShape, now: BoardShape): string | null {
  const d: string[] = [];
  if (saved.harts !== now.harts) d.push(`${saved.harts} cpus (the VM has ${now.harts})`);
  if (saved.memoryBytes !== now.memoryBytes) d.push(`${sizeText(saved.memoryBytes)} of memory (the VM has ${sizeText(now.memoryBytes)})`);
  if (saved.firmware !== now.firmware) d.push(`firmware ${saved.firmware} (the VM has ${now.firmware})`);
  const disk = (x: BoardShape['disks'][number]) => `${x.name} (${x.sectors * 512} bytes${x.readonly ? ', read-only' : ''})`;
  const sd = saved.disks.map(disk).join(', ') || 'none';
  const nd = now.disks.map(disk).join(', ') || 'none';
  if (sd !== nd) d.push(`disks ${sd} (the VM has ${nd})`);
  const sn = saved.nics.join(', ') || 'none', nn = now.nics.join(', ') || 'none';
  if (sn !== nn) d.push(`network cards ${sn} (the VM has ${nn})`);
  if (saved.devices.join(',') !== now.devices.join(',')) d.push(`devices ${saved.devices.join(', ')} (this vmctl's board has ${now.devices.join(', ')})`);
  return d.length === 0 ? null : `the saved state was taken with ${d.join('; ')}`;
}

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
  private readonly nics: VirtioNetSlot[] = [];
  /** The virtio-balloon, when the definition has one. */
  readonly balloon: VirtioBalloonSlot | null = null;
  private htif: Htif | null = null;
  private htifAt: { tohost: number; fromhost: number | null } | null = null;
  /** The virtio-blk slots by index (null: no disk there). */
  private readonly blkSlots: (VirtioBlkSlot | null)[] = [];
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

  private constructor(readonly config: MachineConfig, private readonly host: MachineHost, threads: StartHartThread | undefined, runtime: MachineRuntime, saved?: MachineState) {
    this.gate = runtime.gate ?? null;
    if (!Number.isInteger(config.cpus) || config.cpus < 1 || config.cpus > MAX_CPUS) {
      throw new RangeError(`cpus must be 1..${MAX_CPUS}, got ${config.cpus}`);
    }
    // RAM is made of 2 MiB chunks; a size that is not a multiple gets its last chunk in full,
    // but the guest is only told about (and only loads into) memoryBytes.
    this.ram = new GuestRam(DRAM_BASE, Math.ceil(config.memoryBytes / CHUNK_SIZE) * CHUNK_SIZE);
    this.ram.budget = runtime.budget ?? null;
    this.mem = new PhysicalMemoryMap(this.ram);
    const reservations = new ReservationSet(config.cpus);
    if (threads && config.cpus > 1) {
      // Chunks are made here, on first touch, for every thread (smp.ts).
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
      this.dtbBytes = saved ? this.loadState(saved) : this.load();
      if (this.smp && threads) this.startHartThreads(threads, reservations, saved?.harts);
    } catch (e) {
      this.close(); // release the disk images opened so far (locks, file handles)
      throw e;
    }
    // A restored machine's clock stays paused at the saved mtime until its runtime resumes it.
    // With hart threads, time starts when they are all up (run()).
    if (saved) this.clockPaused = true;
    else if (this.smp === null) this.clock.resume();
  }

  /** `threads`: how to start a thread for a hart (src/vm gives worker threads); without it, every
   *  hart runs on the calling thread. `runtime`: the host's allowances (MachineRuntime). */
  static create(cfg: MachineConfig, host: MachineHost, threads?: StartHartThread, runtime: MachineRuntime = {}): VirtMachine {
    return new VirtMachine(cfg, host, threads, runtime);
  }

  /** A machine built from `cfg` and put into a saved state instead of booting: it goes on where
   *  the saved one stopped (its clock paused at the saved mtime: resumeClock() to run). Throws
   *  MachineStateMismatch when the state does not fit `cfg` (nothing is left open then). */
  static restore(cfg: MachineConfig, host: MachineHost, state: MachineState, threads?: StartHartThread, runtime: MachineRuntime = {}): VirtMachine {
    return new VirtMachine(cfg, host, threads, runtime, state);
  }

  private startHartThreads(threads: StartHartThread, reservations: ReservationSet, states?: readonly HartState[]): void {
    const smp = this.smp!;
    const h0 = this.harts[0];
    smp.start(threads, {
      ramBase: this.ram.base, ramSize: this.ram.size,
      memories: this.ram.memories(),
      chunkGens: Int32Array.from(smp.control.chunkGen), // as of these memories
      clock: this.clock.sharedState,
      reservations: reservations.memory,
      regions: this.mem.listDevices().map((r) => ({ base: r.base, size: r.size, name: r.name, rom: r.base === BOOT_ROM_BASE ? this.romImage : undefined })),
      watched: this.htif ? [{ base: this.htif.tohost, size: 8 }] : [],
      builtinSbi: this.sbi ? { trapSink: BOOT_ROM_BASE, uartBase: UART0_BASE } : null,
      bootPc: BOOT_ROM_BASE,
      jit: h0.jitEnabled,
      ...(states ? { states } : {}),
    });
  }

  /** The 8 virtio-mmio slots. THE place where devices are plugged in, as virtio-slots.ts plans
   *  them: disks (virtio-blk) from slot 0 up, NICs (virtio-net) from slot 7 down (the first NIC
   *  is eth0), the balloon in the highest slot left; the remaining slots stay empty. */
  private attachVirtioSlots(): void {
    const nics = this.config.nics ?? [];
    const plan = planVirtioSlots(this.config.disks.length, nics.length, this.config.balloon !== undefined);
    for (let i = 0; i < VIRTIO_COUNT; i++) {
      const base = VIRTIO_BASE + i * VIRTIO_SIZE;
      const irq = (l: boolean): void => this.plic.setLevel(VIRTIO_IRQ + i, l);
      let device: MmioDevice = new EmptyVirtioSlot();
      this.blkSlots[i] = null;
      const use = plan[i];
      if (use?.kind === 'disk') {
        const slot = new VirtioBlkSlot({ disk: this.config.disks[use.index], ram: this.ram, base, irq, log: (m) => this.host.log(m) });
        this.closers.push(() => slot.close());
        this.blkSlots[i] = slot;
        device = slot.device;
      } else if (use?.kind === 'balloon') {
        const slot = new VirtioBalloonSlot({
          settings: this.config.balloon!, ram: this.ram, guestBytes: this.config.memoryBytes, base, irq,
          dropChunks: (c) => this.releaseChunks(c), log: (m) => this.host.log(m),
        });
        (this as { balloon: VirtioBalloonSlot | null }).balloon = slot;
        this.closers.push(() => slot.close());
        device = slot.device;
      } else if (use?.kind === 'nic') {
        const nicIndex = use.index;
        const nic = nics[nicIndex];
        const mac = parseMac(nic.mac);
        if (!mac) throw new RangeError(`NIC ${nicIndex}: ${JSON.stringify(nic.mac)} is not a MAC address`);
        const backend = this.host.openNic?.(nicIndex, nic) ?? new UnpluggedBackend();
        const slot = new VirtioNetSlot({
          mac, backend, ram: this.ram, base, index: nicIndex, log: (m) => this.host.log(m),
          // A frame that arrived while every hart waits must wake the machine now.
          irq: (l) => { irq(l); if (l) this.host.wake?.(); },
        });
        this.nics.push(slot);
        this.closers.push(() => slot.close());
        device = slot.transport;
      }
      this.mem.addDevice(base, VIRTIO_SIZE, `virtio-mmio@${base.toString(16)}`, device);
    }
  }

  /** Drops RAM chunks (every page of each given up through the balloon): every hart forgets its
   *  views of them and the code translated from them, and the RAM lets them go, so nothing keeps
   *  the host memory alive; the guest reads zeros there from now on. This thread lets go first,
   *  so a hart thread asking for one meanwhile gets a fresh chunk; hart threads drop their copies
   *  before this returns (smp.ts), so no store lands in memory nobody holds any more. */
  releaseChunks(indices: readonly number[]): void {
    if (indices.length === 0) return;
    for (const index of indices) {
      const pa = this.ram.base + index * CHUNK_SIZE;
      for (const h of this.harts) h.dropRam(pa, CHUNK_SIZE);
      this.ram.release(index);
    }
    this.smp?.dropChunks(indices);
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

  /** Each disk's completed requests, by disk index. */
  diskIo(): DiskIo[] {
    return this.blkSlots.map((s) => s?.blk.ioFigures() ?? { reads: 0, writes: 0, readBytes: 0, writtenBytes: 0, flushes: 0 });
  }

  /** Loads firmware, kernel, initrd and device tree; sets the harts' start state. Returns the DTB. */
  private load(): Uint8Array {
    const cfg = this.config;
    const fw = cfg.firmware;
    const ramEnd = DRAM_BASE + cfg.memoryBytes;
    // Each image is read with a bound known in advance, the memory it can go to: a file replaced
    // since `create` by a FIFO or a symlink to /dev/zero is refused, never waited on or read forever.
    const open = <T>(path: string, what: string, maxBytes: number, use: (f: ImageFile) => T): T => {
      try {
        return withRegular(path, { maxBytes, tooLarge: (size) => `is ${size} bytes, more than the ${maxBytes} bytes of memory it can go to` }, use);
      } catch (e) {
        if (e instanceof FileRefused) throw new LoadError(path, `the ${what} ${e.reason}`);
        throw e;
      }
    };

    let firmwareEnd = DRAM_BASE;
    if (fw.kind === 'file') {
      const img = open(fw.path, 'firmware', cfg.memoryBytes, (f) => loadImage(this.ram, f, DRAM_BASE));
      this.firmwareImage = img;
      firmwareEnd = img.end;
      this.watchHtif(img);
    }
    let kernel: LoadedImage | null = null;
    if (cfg.kernelPath) {
      const at = kernelLoadAddress(fw.kind, firmwareEnd);
      kernel = open(cfg.kernelPath, 'kernel', cfg.memoryBytes, (f) => loadImage(this.ram, f, at));
      this.watchHtif(kernel);
    } else if (fw.kind !== 'file') {
      throw new LoadError('(config)', fw.kind === 'builtin'
        ? 'firmware "builtin" needs a kernel to start' : 'nothing to boot: no firmware and no kernel');
    }

    for (const img of [kernel, this.firmwareImage]) {
      if (img && img.end > ramEnd) {
        throw new LoadError(img === kernel ? cfg.kernelPath! : (fw as { path: string }).path,
          `needs RAM up to 0x${img.end.toString(16)}, more than the ${cfg.memoryBytes / MiB} MiB configured`);
      }
    }

    let initrd: { start: number; end: number } | undefined;
    if (cfg.initrdPath) {
      if (!kernel) throw new LoadError(cfg.initrdPath, 'an initrd needs a kernel');
      const start = initrdLoadAddress(kernel.entry, cfg.memoryBytes);
      // It goes at `start`: what fits between there and the end of RAM is the bound.
      const img = open(cfg.initrdPath, 'initrd', Math.max(0, ramEnd - start), (f) => loadRaw(this.ram, f, start));
      initrd = { start, end: img.end };
    }

    // A fresh seed on every boot (as QEMU 7.2's virt board): clones of one disk, and every boot
    // of one VM, start their random number generators apart.
    const dtb = buildDeviceTree({
      cpus: cfg.cpus, memoryBytes: cfg.memoryBytes, bootargs: cfg.cmdline, initrd, sshAuthorizedKeys: cfg.sshAuthorizedKeys,
      rngSeed: new Uint8Array(randomBytes(32)),
    });
    const fdtAddr = fdtLoadAddress(cfg.memoryBytes, dtb.length);
    if (fdtAddr < DRAM_BASE || (kernel && fdtAddr < kernel.end) || (initrd && fdtAddr < initrd.end)) {
      throw new LoadError('(config)', `not enough memory (${cfg.memoryBytes / MiB} MiB) for kernel, initrd and device tree`);
    }
    this.ram.write(fdtAddr, dtb);

    if (fw.kind === 'builtin') {
      // No M-mode code runs with the builtin SBI; mtvec points at a `j .` in the ROM so that an
      // unexpected M-mode trap parks the hart where run() notices it (see checkBuiltinTrap).
      this.attachBootRom(new Uint8Array([0x6f, 0x00, 0x00, 0x00]));
      if (this.smp) for (let h = 0; h < cfg.cpus; h++) this.smp.control.store(h, HSM, HSM_STOPPED);
      this.attachBuiltinSbi().boot(kernel!.entry, fdtAddr);
    } else {
      const startAddr = fw.kind === 'file' ? DRAM_BASE : kernel!.entry;
      this.attachBootRom(buildBootRom({ startAddr, fdtAddr, nextAddr: kernel ? kernel.entry : KERNEL_BASE_WITH_FIRMWARE }));
      for (const h of this.harts) h.setPc(BOOT_ROM_BASE);
    }
    return dtb;
  }

  private attachBootRom(rom: Uint8Array): void {
    this.romImage = rom;
    this.mem.addDevice(BOOT_ROM_BASE, BOOT_ROM_SIZE, 'boot-rom', new BootRom(rom, BOOT_ROM_SIZE));
  }

  /** The builtin SBI, taking this thread's harts (hart threads attach theirs: smp.ts). */
  private attachBuiltinSbi(): BuiltinSbi {
    const smp = this.smp;
    const h0 = this.harts[0];
    this.sbi = new BuiltinSbi({
      harts: smp ? new SharedHarts(smp.control, h0, () => {}, () => smp.beforeHart0(h0)) : this.harts,
      putchar: (b) => this.out.push(b),
      getchar: () => ((this.uart.read(5, 1) & 1) ? this.uart.read(0, 1) : -1),
      power: (ev) => this.power(ev),
      trapSink: BOOT_ROM_BASE,
      ramBase: DRAM_BASE,
      ramSize: this.config.memoryBytes,
    });
    if (smp) this.sbi.attach(h0);
    return this.sbi;
  }

  private watchHtif(img: LoadedImage): void {
    if (img.tohost === undefined || this.htif) return;
    this.attachHtif(img.tohost, img.fromhost ?? null);
  }

  private attachHtif(tohost: number, fromhost: number | null): void {
    this.htifAt = { tohost, fromhost };
    this.htif = new Htif(this.ram, tohost, fromhost ?? undefined, (b) => this.out.push(b), (code) =>
      this.power({ kind: 'poweroff', code: code & 0xff, source: 'htif', failed: code !== 0 }));
    this.mem.watchWrites(tohost, 8, (paddr, size) => this.htif!.onWrite(paddr, size));
  }

  // ---- saved state ----

  /** The board as this machine was built: what a saved state must match. */
  shape(): BoardShape {
    return {
      harts: this.config.cpus,
      memoryBytes: this.config.memoryBytes,
      firmware: this.config.firmware.kind,
      disks: this.config.disks.map((d, i) => ({ name: d.name, readonly: d.readonly, sectors: this.blkSlots[i]!.blk.backend.sectorCount() })),
      nics: (this.config.nics ?? []).map((n) => n.mac),
      devices: this.mem.listDevices().map((r) => r.name),
    };
  }

  /**
   * The whole machine at this instant (between two run() calls: no hart of this thread is inside
   * a block, and no virtio request is in flight, since a notify serves its requests before the
   * store that made it retires). Harts on threads of their own are held meanwhile (and asked for
   * their state). `copyRam`: RAM chunks are copied, so the machine may run on while the state is
   * written; otherwise they are the live chunks (the machine must not run until it is written).
   * All-zero chunks are left out. Console output pending is delivered first.
   */
  saveState(copyRam: boolean): MachineState {
    this.flushOutput();
    const smp = this.smp;
    const held = smp !== null && smp.running && !this.clockPaused;
    if (held && !smp.hold(1000)) throw new Error('a hart thread did not stop within 1 s');
    try {
      const harts: HartState[] = [this.harts[0].saveState(), ...(smp ? smp.collectStates() : this.harts.slice(1).map((h) => h.saveState()))];
      const ram: { index: number; bytes: Uint8Array }[] = [];
      for (let index = 0; index < this.ram.chunkCount; index++) {
        const c = this.ram.existing(index);
        if (c !== undefined && !isZeroChunk(c)) ram.push({ index, bytes: copyRam ? c.slice() : c });
      }
      return {
        shape: this.shape(),
        board: {
          nextHart: this.nextHart,
          bootRom: Buffer.from(this.romImage).toString('base64'),
          dtb: Buffer.from(this.dtbBytes).toString('base64'),
          htif: this.htifAt,
        },
        harts,
        devices: {
          clock: this.clock.saveState(),
          clint: this.clint.saveState(),
          plic: this.plic.saveState(),
          uart: this.uart.saveState(),
          rtc: this.rtc.saveState(),
          virtio: this.mem.listDevices().filter((r) => r.name.startsWith('virtio-mmio@')).map((r) => (r.device instanceof VirtioMmioDevice ? r.device.saveState() : null)),
        },
        ram,
      };
    } finally {
      if (held) smp.release();
    }
  }

  /** Puts the freshly built machine into `s` (instead of load()); returns the saved DTB. Harts
   *  on threads of their own get their states when their threads start. */
  private loadState(s: MachineState): Uint8Array {
    // The boot ROM is part of the board: add it before comparing the device lists.
    this.attachBootRom(new Uint8Array(Buffer.from(s.board.bootRom, 'base64')));
    const problem = describeMismatch({ ...s.shape, nics: s.shape.nics ?? [] }, this.shape());
    if (problem !== null) throw new MachineStateMismatch(problem);
    if (s.harts.length !== this.config.cpus) throw new MachineStateMismatch(`the saved state has ${s.harts.length} harts`);
    if (this.config.firmware.kind === 'builtin') {
      if (this.smp) s.harts.forEach((h, i) => this.smp!.control.store(i, HSM, h.halted ? HSM_STOPPED : HSM_STARTED));
      this.attachBuiltinSbi();
    }
    if (s.board.htif) this.attachHtif(s.board.htif.tohost, s.board.htif.fromhost);
    for (const { index, bytes } of s.ram) {
      if (index < 0 || index >= this.ram.chunkCount || bytes.length !== CHUNK_SIZE) throw new MachineStateMismatch(`RAM chunk ${index} does not fit ${this.ram.size} bytes of RAM`);
      this.ram.chunk(index).set(bytes);
    }
    this.harts.forEach((h) => h.loadState(s.harts[h.hartId]));
    const d = s.devices;
    this.clock.loadState(d.clock);
    this.clint.loadState(d.clint);
    this.plic.loadState(d.plic);
    this.uart.loadState(d.uart);
    this.rtc.loadState(d.rtc);
    const slots = this.mem.listDevices().filter((r) => r.name.startsWith('virtio-mmio@'));
    slots.forEach((r, i) => {
      const v = d.virtio[i] ?? null;
      const here = r.device instanceof VirtioMmioDevice ? r.device : null;
      if ((here === null) !== (v === null)) throw new MachineStateMismatch(`virtio slot ${i} differs`);
      here?.loadState(v!);
    });
    this.nextHart = s.board.nextHart % this.harts.length;
    return new Uint8Array(Buffer.from(s.board.dtb, 'base64'));
  }

  /** Makes every completed disk write durable (fsync). */
  flushDisks(): void {
    for (const s of this.blkSlots) s?.blk.backend.flush();
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

  /** Hands the console output the guest wrote so far in this slice to the host (normally at the
   *  slice's end; also when the VM stops in the middle of one to wait for host memory, so that
   *  what the guest printed before is seen while it waits). */
  flushOutput(): void {
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

  /** Runs the harts for about `budgetMs` of host time (or, for tests that need runs to repeat
   *  exactly, until the harts of this thread have retired `maxInstructions`). */
  run(budgetMs: number, maxInstructions = Infinity): RunState {
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
    let left = maxInstructions;
    const gate = this.gate;
    this.throttledMs = 0;
    try {
      for (;;) {
        this.pollTimers();
        let active = 0;
        if (smp !== null) smp.hart0Running(true, harts[0]);
        for (let k = 0; k < n && !this.halted && left > 0; k++) {
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
            left -= h.run(left < SLICE ? left : SLICE);
            gate.ran(performance.now() - t0);
          } else left -= h.run(left < SLICE ? left : SLICE);
          if (this.sbi !== null && h.mode === 3) this.builtinTrapped(h);
          if (!h.waiting && !h.halted && !h.polling) active++;
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
        if (left <= 0 || performance.now() >= deadline) return 'running';
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
    for (const h of this.harts) if (!h.halted && !h.waiting && !h.polling) return true;
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
    // A hart that waits for another (Hart.polling) rests a moment, then runs again, as on a hart thread.
    for (const h of this.harts) if (h.polling && !h.halted) t = Math.min(t, POLLING_REST_MS);
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
    for (const n of this.nics) n.setPaused(true);
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
    for (const n of this.nics) n.setPaused(false);
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

  /** The translators' figures summed over the harts (src/riscv/jit.ts JitStats). */
  jitStats(): JitStats {
    const s = new JitStats();
    for (const h of this.harts) s.add(h.jitStats);
    // harts 1..N-1 on threads of their own: the figures their threads publish after each slice
    const smp = this.smp;
    if (smp !== null) for (let i = 1; i < this.config.cpus; i++) smp.addJitStats(i, s);
    return s;
  }

  /** Puts other images behind disks (by slot index; the guest sees the same disks), between two
   *  run() calls. `onCurrent`: each is a new overlay over the disk's current top (a snapshot),
   *  which stays open as its backing image; those old tops are returned (to be flushed). */
  reopenDisks(paths: readonly { readonly index: number; readonly path: string }[], onCurrent = false): BlockBackend[] {
    // All or nothing: every new image is opened before any disk switches.
    const opened: { slot: VirtioBlkSlot; b: BlockBackend; path: string }[] = [];
    try {
      for (const { index, path } of paths) opened.push({ slot: this.slot(index), b: this.slot(index).open(path, onCurrent), path });
    } catch (e) {
      // Closing a new overlay would close the top it was built on: leave those to be collected.
      if (!onCurrent) for (const o of opened) o.b.close();
      throw e;
    }
    return opened.flatMap((o) => o.slot.swap(o.b, o.path, onCurrent) ?? []);
  }

  /** Closes every disk for a while (their files are being merged); attachDisks opens them. */
  detachDisks(): void {
    for (const s of this.blkSlots) s?.detach();
  }

  attachDisks(paths: readonly { readonly index: number; readonly path: string }[]): void {
    this.reopenDisks(paths);
  }

  private slot(index: number): VirtioBlkSlot {
    const s = this.blkSlots[index];
    if (!s) throw new RangeError(`no disk in virtio slot ${index}`);
    return s;
  }

  dtb(): Uint8Array { return this.dtbBytes; }

  close(): void {
    this.smp?.close();
    this.flushOutput();
    for (const c of this.closers.splice(0)) c();
  }
}
