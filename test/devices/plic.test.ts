// PLIC against the RISC-V PLIC specification: priorities, threshold, enables, claim/complete,
// level-triggered gateway, per-hart M/S contexts.
import { describe, expect, it } from 'vitest';
import { Plic, MIP_MEIP_BIT, MIP_SEIP_BIT } from '../../src/devices/plic.js';

function make(harts = 2) {
  const lines = new Map<string, boolean>();
  const p = new Plic(harts, (h, bit, l) => lines.set(`${h}:${bit}`, l));
  const line = (h: number, bit: number) => lines.get(`${h}:${bit}`) ?? false;
  return { p, line };
}
const prio = (s: number) => 4 * s;
const enable = (ctx: number, word = 0) => 0x2000 + 0x80 * ctx + 4 * word;
const threshold = (ctx: number) => 0x200000 + 0x1000 * ctx;
const claim = (ctx: number) => 0x200004 + 0x1000 * ctx;

describe('plic', () => {
  it('priority registers hold 3 bits; source 0 is hardwired to 0', () => {
    const { p } = make();
    p.write(prio(10), 4, 0xff);
    expect(p.read(prio(10), 4)).toBe(7);
    p.write(prio(0), 4, 5);
    expect(p.read(prio(0), 4)).toBe(0);
    p.write(enable(0), 4, 0xffffffff);
    expect(p.read(enable(0), 4)).toBe(0xfffffffe);
  });

  it('a pending enabled source above threshold raises MEIP of its context only', () => {
    const { p, line } = make();
    p.write(prio(10), 4, 1);
    p.setLevel(10, true);
    expect(p.read(0x1000, 4)).toBe(1 << 10);
    expect(line(0, MIP_MEIP_BIT)).toBe(false); // not enabled yet
    p.write(enable(1), 4, 1 << 10);            // hart 0 S-mode
    expect(line(0, MIP_SEIP_BIT)).toBe(true);
    expect(line(0, MIP_MEIP_BIT)).toBe(false);
    p.write(threshold(1), 4, 1);               // priority must exceed the threshold
    expect(line(0, MIP_SEIP_BIT)).toBe(false);
    p.write(threshold(1), 4, 0);
    expect(line(0, MIP_SEIP_BIT)).toBe(true);
    p.write(enable(2, 0), 4, 1 << 10);         // hart 1 M-mode too
    expect(line(1, MIP_MEIP_BIT)).toBe(true);
  });

  it('claim returns the highest priority, then the lowest ID; complete re-arms a level still high', () => {
    const { p, line } = make(1);
    for (const s of [3, 5, 40]) { p.write(prio(s), 4, s === 40 ? 6 : 2); p.setLevel(s, true); }
    p.write(enable(0, 0), 4, (1 << 3) | (1 << 5));
    p.write(enable(0, 1), 4, 1 << (40 - 32));
    expect(p.read(claim(0), 4)).toBe(40);
    expect(p.read(claim(0), 4)).toBe(3);
    expect(p.read(claim(0), 4)).toBe(5);
    expect(p.read(claim(0), 4)).toBe(0);
    expect(line(0, MIP_MEIP_BIT)).toBe(false);
    // source 3 is still asserted: while claimed it stays quiet, completion makes it pending again
    p.write(claim(0), 4, 3);
    expect(line(0, MIP_MEIP_BIT)).toBe(true);
    expect(p.read(claim(0), 4)).toBe(3);
    // source 5 drops its line before completion: nothing more after the completion
    p.setLevel(5, false);
    p.write(claim(0), 4, 5);
    expect(p.read(0x1000, 4) & (1 << 5)).toBe(0);
  });

  it('a request withdrawn before the claim is not delivered', () => {
    const { p, line } = make(1);
    p.write(prio(1), 4, 1);
    p.write(enable(0), 4, 2);
    p.setLevel(1, true);
    expect(line(0, MIP_MEIP_BIT)).toBe(true);
    p.setLevel(1, false);
    expect(line(0, MIP_MEIP_BIT)).toBe(false);
    expect(p.read(claim(0), 4)).toBe(0);
  });

  it('sources with priority 0 never interrupt', () => {
    const { p, line } = make(1);
    p.write(enable(0), 4, 2);
    p.setLevel(1, true);
    expect(line(0, MIP_MEIP_BIT)).toBe(false);
    expect(p.read(claim(0), 4)).toBe(0);
  });

  it('a completion for a source not enabled in that context is ignored', () => {
    const { p } = make(1);
    p.write(prio(7), 4, 1);
    p.write(enable(0), 4, 1 << 7);
    p.setLevel(7, true);
    expect(p.read(claim(0), 4)).toBe(7);
    p.write(claim(1), 4, 7); // S context never enabled 7
    expect(p.read(0x1000, 4) & (1 << 7)).toBe(0);
    p.write(claim(0), 4, 7);
    expect(p.read(0x1000, 4) & (1 << 7)).toBe(1 << 7);
  });
});
