// Which device sits in which of the board's 8 virtio-mmio slots (QEMU's virt has 8 too). THE one
// place that decides it, for the board (src/board/virt.ts), the configuration's checks
// (src/config/vm-definition.ts) and the daemon's default network card (src/daemon/vm-instance.ts).
//
// Disks take slots from 0 upwards, in the order of the definition. NICs take slots from 7
// downwards (NIC j in slot 7 - j): QEMU plugs `-device virtio-*-device` from the top slot down,
// and Linux probes the highest slot first, so the first NIC is eth0. The balloon takes the
// highest slot left after them (a lone virtio-balloon-device sits in slot 7 in QEMU too).
// The configuration decides which devices are wanted and whether they fit; here a plan that does
// not fit is a bug, not a user error.

import { VIRTIO_COUNT } from './memory-map.js';

export type VirtioSlotUse =
  | { readonly kind: 'disk'; readonly index: number }
  | { readonly kind: 'nic'; readonly index: number }
  | { readonly kind: 'balloon' }
  | null;

/** Slots a definition's devices need, for the configuration's checks. */
export function virtioSlotsNeeded(disks: number, nics: number, balloon: boolean): number {
  return disks + nics + (balloon ? 1 : 0);
}

/**
 * How many network cards a VM without a `network:` key gets: one (on user-mode NAT, as QEMU and
 * VirtualBox default to) when a slot is left after its disks and its balloon, else none. The
 * order of claims is disks, then the balloon (src/config/vm-definition.ts decides whether it
 * fits after the disks), then this default NIC in what is left.
 */
export function defaultNicCount(disks: number, balloon: boolean): number {
  return virtioSlotsNeeded(disks, 1, balloon) <= VIRTIO_COUNT ? 1 : 0;
}

export function planVirtioSlots(disks: number, nics: number, balloon: boolean): VirtioSlotUse[] {
  if (virtioSlotsNeeded(disks, nics, balloon) > VIRTIO_COUNT) {
    throw new RangeError(`${disks} disks, ${nics} NICs${balloon ? ' and a balloon' : ''} do not fit the virt board's ${VIRTIO_COUNT} virtio-mmio slots`);
  }
  const plan: VirtioSlotUse[] = new Array(VIRTIO_COUNT).fill(null);
  for (let i = 0; i < disks; i++) plan[i] = { kind: 'disk', index: i };
  for (let j = 0; j < nics; j++) plan[VIRTIO_COUNT - 1 - j] = { kind: 'nic', index: j };
  if (balloon) plan[plan.lastIndexOf(null)] = { kind: 'balloon' };
  return plan;
}
