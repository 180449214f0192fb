// MAC addresses: parsing, printing, and the stable address vmctl gives a NIC.

import { createHash } from 'node:crypto';

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** "52:54:00:12:34:56" -> 6 bytes, or null when it is not one. */
export function parseMac(text: string): Uint8Array | null {
  if (!MAC_RE.test(text)) return null;
  return Uint8Array.from(text.split(':').map((h) => Number.parseInt(h, 16)));
}

export function formatMac(mac: Uint8Array): string {
  return [...mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Why a MAC cannot be a NIC's own address, or null. */
export function macProblem(mac: Uint8Array): string | null {
  if ((mac[0] & 1) !== 0) return 'it is a multicast address (the lowest bit of the first byte is set)';
  if (mac.every((b) => b === 0)) return 'it is all zeros';
  return null;
}

/**
 * The MAC of NIC `index` of a VM, stable across restarts: QEMU's 52:54:00 prefix (locally
 * administered, unicast) and three bytes of SHA-256 over the VM's identity and the NIC's index,
 * so two VMs on one switch network get different addresses.
 */
export function defaultMac(vmIdentity: string, index: number): string {
  const h = createHash('sha256').update(`vmctl-nic\0${vmIdentity}\0${index}`).digest();
  return formatMac(Uint8Array.from([0x52, 0x54, 0x00, h[0], h[1], h[2]]));
}
