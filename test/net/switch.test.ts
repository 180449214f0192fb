// The learning switch of switch networks: delivery by learned address, flooding of broadcasts
// and unknown destinations, never back to the sender, and nothing for a port that left.

import { describe, expect, it } from 'vitest';
import { L2Switch } from '../../src/net/switch.js';

const mac = (n: number): number[] => [0x52, 0x54, 0, 0, 0, n];
const frame = (dst: number[], src: number[], tag: number): Uint8Array => Uint8Array.from([...dst, ...src, 0x08, 0x00, tag, ...new Array(45).fill(0)]);
const BCAST = [255, 255, 255, 255, 255, 255];

function rig(n: number): { sw: L2Switch; got: number[][] } {
  const sw = new L2Switch();
  const got: number[][] = Array.from({ length: n }, () => []);
  for (let i = 0; i < n; i++) sw.add({ id: i, send: (f) => got[i].push(f[14]) });
  return { sw, got };
}

describe('L2 switch', () => {
  it('floods what it cannot place, then delivers to the learned port only; never back to the sender', () => {
    const { sw, got } = rig(3);
    sw.input(0, frame(mac(2), mac(1), 1)); // 2 unknown: flood
    expect(got).toEqual([[], [1], [1]]);
    sw.input(2, frame(mac(1), mac(3), 2)); // 1 learned at port 0
    expect(got).toEqual([[2], [1], [1]]);
    sw.input(0, frame(mac(3), mac(1), 3)); // 3 learned at port 2
    expect(got).toEqual([[2], [1], [1, 3]]);
    sw.input(1, frame(BCAST, mac(9), 4));  // broadcast: everyone else
    expect(got).toEqual([[2, 4], [1], [1, 3, 4]]);
    sw.input(0, frame(mac(1), mac(1), 5)); // to itself: nowhere
    expect(got).toEqual([[2, 4], [1], [1, 3, 4]]);
  });

  it('drops runts and giants; forgets the addresses of a port that left', () => {
    const { sw, got } = rig(2);
    sw.input(0, new Uint8Array(10));
    sw.input(0, new Uint8Array(2000));
    expect(sw.dropped).toBe(2);
    sw.input(1, frame(BCAST, mac(7), 1));
    sw.remove(1);
    sw.input(0, frame(mac(7), mac(1), 2));
    expect(got).toEqual([[1], []]);
  });

  it('learns at most its limit of addresses (a guest inventing source MACs)', () => {
    const sw = new L2Switch(16);
    const got: number[] = [];
    sw.add({ id: 0, send: () => {} });
    sw.add({ id: 1, send: (f) => got.push(f[14]) });
    for (let i = 0; i < 1000; i++) sw.input(0, frame(BCAST, [0x52, 0, 0, 0, i >> 8, i & 255], 0));
    sw.input(1, frame([0x52, 0, 0, 0, 3, 200], mac(1), 9)); // never learned: flooded to port 0, not lost
    expect((sw as unknown as { table: Map<number, number> }).table.size).toBe(16);
  });
});
