// An empty virtio-mmio slot (virtio spec v1.2, 4.2.2 "MMIO Device Register Layout"): the
// transport is there but no device is plugged in. Drivers read MagicValue "virt", Version 2 and
// DeviceID 0, which the spec (4.2.3.1.1) says means "no device": they skip the slot, as on QEMU's
// virt board where all 8 slots always exist. Writes are ignored.
// Slots with a device use H5's transport in src/devices/virtio/ instead.

import type { MmioDevice } from '../memory/bus.js';
import { VIRTIO_MMIO_MAGIC, VIRTIO_MMIO_VENDOR, VIRTIO_MMIO_VERSION } from './virtio/mmio.js';

export class EmptyVirtioSlot implements MmioDevice {
  read(offset: number, size: 1 | 2 | 4): number {
    if (size !== 4) return 0;
    switch (offset) {
      case 0x000: return VIRTIO_MMIO_MAGIC;
      case 0x004: return VIRTIO_MMIO_VERSION;
      case 0x008: return 0;
      case 0x00c: return VIRTIO_MMIO_VENDOR;
      default: return 0;
    }
  }

  write(_offset: number, _size: 1 | 2 | 4, _value: number): void {}
}
