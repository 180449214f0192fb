// Which device sits in which of the board's 8 virtio-mmio slots (QEMU's virt has 8 too).
// Disks take slots from 0 upwards, in the order of the definition; the balloon takes the highest
// slot left (QEMU plugs `-device virtio-*-device` from the top slot down: a lone
// virtio-balloon-device sits in slot 7 there too). The configuration decides whether a balloon
// is wanted and whether it fits (src/config/vm-definition.ts); here a plan that does not fit is
// a bug, not a user error.

import { VIRTIO_COUNT } from './memory-map.js';

export type VirtioSlotUse = { readonly kind: 'disk'; readonly index: number } | { readonly kind: 'balloon' } | null;

/** Slots a definition's devices need, for the configuration's checks. */
export function virtioSlotsNeeded(disks: number, balloon: boolean): number {
  return disks + (balloon ? 1 : 0);
}

export function planVirtioSlots(disks: number, balloon: boolean): VirtioSlotUse[] {
  if (virtioSlotsNeeded(disks, balloon) > VIRTIO_COUNT) {
    throw new RangeError(`${disks} disks${balloon ? ' and a balloon' : ''} do not fit the virt board's ${VIRTIO_COUNT} virtio-mmio slots`);
  }
  const plan: VirtioSlotUse[] = new Array(VIRTIO_COUNT).fill(null);
  for (let i = 0; i < disks; i++) plan[i] = { kind: 'disk', index: i };
  if (balloon) plan[plan.lastIndexOf(null)] = { kind: 'balloon' };
  return plan;
}
