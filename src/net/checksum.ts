// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of 16-bit
// big-endian words. Used by IPv4 headers (RFC 791), ICMP (RFC 792), UDP (RFC 768) and TCP
// (RFC 9293 3.1), the last two over a pseudo-header of addresses, protocol and length.

/** Adds bytes [start, end) to a running 32-bit sum (not yet folded). An odd trailing byte is
 *  padded with zero, so only the last range of a checksum may have odd length. */
export function sumBytes(b: Uint8Array, start: number, end: number, sum = 0): number {
  let i = start;
  const last = end - 1;
  // Folding every 2^15 words keeps the sum below 2^32, where >>> still works.
  while (i < last) {
    const stop = Math.min(last, i + 0x10000);
    for (; i < stop; i += 2) sum += (b[i] << 8) | b[i + 1];
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  if (i === last) sum += b[i] << 8;
  return sum;
}

/** Folds a running sum into the 16-bit ones' complement checksum. */
export function finishSum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Running sum of the IPv4 pseudo-header (RFC 793 / RFC 768): source, destination, protocol, length. */
export function pseudoHeaderSum(src: number, dst: number, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}

/** Folds a running sum without complementing it: the partial checksum a NEEDS_CSUM frame carries. */
export function foldSum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}
