// The device tree of our virt board, node by node as QEMU 7.2 generates it for
// `-machine virt -cpu rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false`
// (hw/riscv/virt.c), minus what we do not emulate: pmu, fw-cfg, flash, platform-bus and pci;
// `mmu-type` is sv39 (our MMU) and `riscv,isa` lists what our hart implements. Like QEMU 7.2,
// /chosen carries a fresh `rng-seed` (32 random bytes) on every boot, so that the guest's random
// numbers differ between boots and between clones of one disk.
// Nodes and properties come in the order QEMU's blob has them (libfdt inserts new nodes and
// properties in front of older ones, so QEMU's order is the reverse of its code's), and
// phandles are numbered the same way, so `dtc -I dtb -O dts` prints the same text for both.

import { FdtWriter, cells64 } from './fdt.js';
import {
  CLINT_BASE, CLINT_SIZE, DRAM_BASE, PLIC_BASE, PLIC_SIZE, RISCV_ISA, RTC_BASE, RTC_IRQ, RTC_SIZE,
  TEST_BASE, TEST_SIZE, TIMEBASE_HZ, UART0_BASE, UART0_IRQ, UART0_SIZE, UART_CLOCK_HZ, VIRTIO_BASE,
  VIRTIO_COUNT, VIRTIO_IRQ, VIRTIO_SIZE,
} from './memory-map.js';

export interface DeviceTreeParams {
  readonly cpus: number;
  readonly memoryBytes: number;
  readonly bootargs?: string;
  readonly initrd?: { readonly start: number; readonly end: number };
  /** OpenSSH public key lines for the guest's root (vmctl ssh), as /chosen/vmctl,ssh-authorized-keys. */
  readonly sshAuthorizedKeys?: string;
  /** /chosen/rng-seed (QEMU: 32 bytes from its entropy source, per boot); none when absent. */
  readonly rngSeed?: Uint8Array;
}

// Local interrupt numbers on the hart's interrupt controller (Priv spec 3.1.9, mip bits).
const IRQ_M_SOFT = 3, IRQ_M_TIMER = 7, IRQ_S_EXT = 9, IRQ_M_EXT = 11;

const hex = (n: number) => n.toString(16);

export function buildDeviceTree(p: DeviceTreeParams): Uint8Array {
  const n = p.cpus;
  // QEMU numbers phandles as it creates nodes: the cpus from the last to the first (each cpu,
  // then its interrupt controller), then the PLIC, then the test device (syscon).
  const cpuPhandle = (i: number) => 2 * (n - 1 - i) + 1;
  const intcPhandle = (i: number) => 2 * (n - 1 - i) + 2;
  const plicPhandle = 2 * n + 1;
  const testPhandle = 2 * n + 2;

  const w = new FdtWriter();
  w.beginNode('');
  w.propCells('#address-cells', 2);
  w.propCells('#size-cells', 2);
  w.propStrings('compatible', 'riscv-virtio');
  w.propStrings('model', 'riscv-virtio,qemu');

  w.beginNode('chosen');
  if (p.initrd) {
    // QEMU writes these as single cells (hw/riscv/boot.c riscv_load_initrd).
    w.propCells('linux,initrd-end', p.initrd.end);
    w.propCells('linux,initrd-start', p.initrd.start);
  }
  if (p.rngSeed) w.prop('rng-seed', p.rngSeed);
  if (p.bootargs !== undefined && p.bootargs !== '') w.propStrings('bootargs', p.bootargs);
  w.propStrings('stdout-path', `/soc/serial@${hex(UART0_BASE)}`);
  // vmctl's own: the key `vmctl ssh` logs in with, for the guest to install (like cloud-init's
  // NoCloud data, without a disk): a guest that does not know the property ignores it.
  if (p.sshAuthorizedKeys) w.propStrings('vmctl,ssh-authorized-keys', p.sshAuthorizedKeys);
  w.endNode();

  // Linux's syscon-poweroff / syscon-reboot drivers write these values into the test device.
  for (const [node, value] of [['poweroff', 0x5555], ['reboot', 0x7777]] as const) {
    w.beginNode(node);
    w.propCells('value', value);
    w.propCells('offset', 0);
    w.propCells('regmap', testPhandle);
    w.propStrings('compatible', `syscon-${node}`);
    w.endNode();
  }

  w.beginNode(`memory@${hex(DRAM_BASE)}`);
  w.propStrings('device_type', 'memory');
  w.propCells('reg', ...cells64(DRAM_BASE), ...cells64(p.memoryBytes));
  w.endNode();

  w.beginNode('cpus');
  w.propCells('#address-cells', 1);
  w.propCells('#size-cells', 0);
  w.propCells('timebase-frequency', TIMEBASE_HZ);
  for (let i = 0; i < n; i++) {
    w.beginNode(`cpu@${i}`);
    w.propCells('phandle', cpuPhandle(i));
    w.propStrings('device_type', 'cpu');
    w.propCells('reg', i);
    w.propStrings('status', 'okay');
    w.propStrings('compatible', 'riscv');
    w.propStrings('riscv,isa', RISCV_ISA);
    w.propStrings('mmu-type', 'riscv,sv39');
    w.beginNode('interrupt-controller');
    w.propCells('#interrupt-cells', 1);
    w.propEmpty('interrupt-controller');
    w.propStrings('compatible', 'riscv,cpu-intc');
    w.propCells('phandle', intcPhandle(i));
    w.endNode();
    w.endNode();
  }
  w.beginNode('cpu-map');
  w.beginNode('cluster0');
  for (let i = 0; i < n; i++) {
    w.beginNode(`core${i}`);
    w.propCells('cpu', cpuPhandle(i));
    w.endNode();
  }
  w.endNode();
  w.endNode();
  w.endNode(); // cpus

  w.beginNode('soc');
  w.propCells('#address-cells', 2);
  w.propCells('#size-cells', 2);
  w.propStrings('compatible', 'simple-bus');
  w.propEmpty('ranges');

  w.beginNode(`rtc@${hex(RTC_BASE)}`);
  w.propCells('interrupts', RTC_IRQ);
  w.propCells('interrupt-parent', plicPhandle);
  w.propCells('reg', 0, RTC_BASE, 0, RTC_SIZE);
  w.propStrings('compatible', 'google,goldfish-rtc');
  w.endNode();

  w.beginNode(`serial@${hex(UART0_BASE)}`);
  w.propCells('interrupts', UART0_IRQ);
  w.propCells('interrupt-parent', plicPhandle);
  w.propCells('clock-frequency', UART_CLOCK_HZ);
  w.propCells('reg', 0, UART0_BASE, 0, UART0_SIZE);
  w.propStrings('compatible', 'ns16550a');
  w.endNode();

  w.beginNode(`test@${hex(TEST_BASE)}`);
  w.propCells('phandle', testPhandle);
  w.propCells('reg', 0, TEST_BASE, 0, TEST_SIZE);
  w.propStrings('compatible', 'sifive,test1', 'sifive,test0', 'syscon');
  w.endNode();

  for (let i = VIRTIO_COUNT - 1; i >= 0; i--) {
    const base = VIRTIO_BASE + i * VIRTIO_SIZE;
    w.beginNode(`virtio_mmio@${hex(base)}`);
    w.propCells('interrupts', VIRTIO_IRQ + i);
    w.propCells('interrupt-parent', plicPhandle);
    w.propCells('reg', 0, base, 0, VIRTIO_SIZE);
    w.propStrings('compatible', 'virtio,mmio');
    w.endNode();
  }

  w.beginNode(`plic@${hex(PLIC_BASE)}`);
  w.propCells('phandle', plicPhandle);
  w.propCells('riscv,ndev', 0x60);
  w.propCells('reg', 0, PLIC_BASE, 0, PLIC_SIZE);
  const plicIrqs: number[] = [];
  for (let i = 0; i < n; i++) plicIrqs.push(intcPhandle(i), IRQ_M_EXT, intcPhandle(i), IRQ_S_EXT);
  w.propCells('interrupts-extended', ...plicIrqs);
  w.propEmpty('interrupt-controller');
  w.propStrings('compatible', 'sifive,plic-1.0.0', 'riscv,plic0');
  w.propCells('#address-cells', 0);
  w.propCells('#interrupt-cells', 1);
  w.endNode();

  w.beginNode(`clint@${hex(CLINT_BASE)}`);
  const clintIrqs: number[] = [];
  for (let i = 0; i < n; i++) clintIrqs.push(intcPhandle(i), IRQ_M_SOFT, intcPhandle(i), IRQ_M_TIMER);
  w.propCells('interrupts-extended', ...clintIrqs);
  w.propCells('reg', 0, CLINT_BASE, 0, CLINT_SIZE);
  w.propStrings('compatible', 'sifive,clint0', 'riscv,clint0');
  w.endNode();

  w.endNode(); // soc
  w.endNode(); // root
  return w.finish();
}
