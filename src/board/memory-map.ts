// QEMU 7.2 `virt` machine memory map and interrupt numbers (hw/riscv/virt.c, virt_memmap[]).

export const BOOT_ROM_BASE = 0x1000;
export const BOOT_ROM_SIZE = 0xf000;
export const TEST_BASE = 0x100000;
export const TEST_SIZE = 0x1000;
export const RTC_BASE = 0x101000;
export const RTC_SIZE = 0x1000;
export const CLINT_BASE = 0x2000000;
export const CLINT_SIZE = 0x10000;
export const PLIC_BASE = 0xc000000;
export const PLIC_SIZE = 0x600000;
export const UART0_BASE = 0x10000000;
export const UART0_SIZE = 0x100;
export const VIRTIO_BASE = 0x10001000;
export const VIRTIO_SIZE = 0x1000;
export const VIRTIO_COUNT = 8;
export const DRAM_BASE = 0x80000000;

export const UART0_IRQ = 10;
export const RTC_IRQ = 11;
/** virtio-mmio slot i uses PLIC source VIRTIO_IRQ + i. */
export const VIRTIO_IRQ = 1;

export const UART_CLOCK_HZ = 3686400;
export const TIMEBASE_HZ = 10_000_000;

/** Where a kernel goes when there is firmware in front of it (RV64: 2 MiB after DRAM base). */
export const KERNEL_BASE_WITH_FIRMWARE = 0x80200000;

/** The ISA string our harts implement (DT binding riscv/cpus.yaml, `riscv,isa`). */
export const RISCV_ISA = 'rv64imafdc_zicsr_zifencei_sstc';
export const MAX_CPUS = 8;
