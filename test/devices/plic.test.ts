// PLIC against the RISC-V PLIC specification (priorities, threshold, enables, claim/complete,
// per-hart M/S contexts) with QEMU 7.2's gateways: a source is pending from each high signal
// of its device until claimed, and a completion does not sample the line (issue 18).
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

  it('claim returns the highest priority, then the lowest ID', () => {
    const { p, line } = make(1);
    for (const s of [3, 5, 40]) { p.write(prio(s), 4, s === 40 ? 6 : 2); p.setLevel(s, true); }
    p.write(enable(0, 0), 4, (1 << 3) | (1 << 5));
    p.write(enable(0, 1), 4, 1 << (40 - 32));
    expect(p.read(claim(0), 4)).toBe(40);
    expect(p.read(claim(0), 4)).toBe(3);
    expect(p.read(claim(0), 4)).toBe(5);
    expect(p.read(claim(0), 4)).toBe(0);
    expect(line(0, MIP_MEIP_BIT)).toBe(false);
  });

  it('a completion does not look at the line: a cause left standing is delivered once', () => {
    const { p, line } = make(1);
    p.write(prio(3), 4, 1);
    p.write(enable(0), 4, 1 << 3);
    p.setLevel(3, true);
    expect(p.read(claim(0), 4)).toBe(3);
    p.write(claim(0), 4, 3); // the device still holds its line high, but signals nothing new
    expect(line(0, MIP_MEIP_BIT)).toBe(false);
    expect(p.read(0x1000, 4)).toBe(0);
    expect(p.read(claim(0), 4)).toBe(0);
  });

  it('a signal while claimed makes the source pending, delivered after the completion', () => {
    const { p, line } = make(1);
    p.write(prio(3), 4, 1);
    p.write(enable(0), 4, 1 << 3);
    p.setLevel(3, true);
    expect(p.read(claim(0), 4)).toBe(3);
    p.setLevel(3, true);                         // signalled again while claimed
    expect(p.read(0x1000, 4)).toBe(1 << 3);      // pending, but held back
    expect(line(0, MIP_MEIP_BIT)).toBe(false);
    expect(p.read(claim(0), 4)).toBe(0);
    p.write(claim(0), 4, 3);
    expect(line(0, MIP_MEIP_BIT)).toBe(true);
    expect(p.read(claim(0), 4)).toBe(3);
  });

  it('a request withdrawn before the claim is still delivered (QEMU 7.2.x: lowering keeps the pending bit)', () => {
    const { p, line } = make(1);
    p.write(prio(1), 4, 1);
    p.write(enable(0), 4, 2);
    p.setLevel(1, true);
    expect(line(0, MIP_MEIP_BIT)).toBe(true);
    p.setLevel(1, false);
    expect(line(0, MIP_MEIP_BIT)).toBe(true);
    expect(p.read(claim(0), 4)).toBe(1);
    expect(line(0, MIP_MEIP_BIT)).toBe(false);
  });

  it('sources with priority 0 never interrupt', () => {
    const { p, line } = make(1);
    p.write(enable(0), 4, 2);
    p.setLevel(1, true);
    expect(line(0, MIP_MEIP_BIT)).toBe(false);
    expect(p.read(claim(0), 4)).toBe(0);
  });

  it('a completion through any context ends the claim (QEMU does not check the enable bit)', () => {
    const { p, line } = make(1);
    p.write(prio(7), 4, 1);
    p.write(enable(0), 4, 1 << 7);
    p.setLevel(7, true);
    expect(p.read(claim(0), 4)).toBe(7);
    p.setLevel(7, true);
    p.write(claim(1), 4, 7); // S context never enabled 7
    expect(line(0, MIP_MEIP_BIT)).toBe(true);
    expect(p.read(claim(0), 4)).toBe(7);
    p.write(claim(0), 4, 7);
    p.write(claim(0), 4, 99); // no such source: ignored
    expect(p.read(claim(0), 4)).toBe(0);
  });
});
