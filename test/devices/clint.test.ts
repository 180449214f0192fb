// CLINT against the SiFive CLINT layout QEMU virt uses, driven by a fake host clock.
import { describe, expect, it } from 'vitest';
import { Clint, MIP_MSIP_BIT, MIP_MTIP_BIT } from '../../src/devices/clint.js';
import { VirtClock } from '../../src/devices/clock.js';

function make(harts = 2) {
  let hostMs = 1000;
  const clock = new VirtClock(() => hostMs);
  const lines = new Map<string, boolean>();
  const c = new Clint(harts, clock, (h, bit, l) => lines.set(`${h}:${bit}`, l));
  const line = (h: number, bit: number) => lines.get(`${h}:${bit}`) ?? false;
  const advance = (ms: number) => { hostMs += ms; };
  return { c, clock, line, advance };
}
const MTIME = 0xbff8;

describe('clint', () => {
  it('mtime counts at 10 MHz while running and stands still while paused', () => {
    const { c, clock, advance } = make();
    expect(c.read(MTIME, 4)).toBe(0);
    clock.resume();
    advance(2.5);
    expect(c.read(MTIME, 4)).toBe(25000);
    clock.pause();
    advance(1000);
    expect(c.read(MTIME, 4)).toBe(25000);
    clock.resume();
    advance(1);
    expect(c.read(MTIME, 4)).toBe(35000);
  });

  it('64-bit mtime read as low then high halves is consistent across a carry', () => {
    const { c, clock, advance } = make();
    clock.setMtime(0xffffffff - 5);
    clock.resume();
    const lo = c.read(MTIME, 4);  // latches the high half
    advance(10);                  // +100000 ticks: the low half wraps
    const hi = c.read(MTIME + 4, 4);
    expect(hi * 2 ** 32 + lo).toBe(0xffffffff - 5);
    expect(c.read(MTIME + 4, 4)).toBe(1); // an unpaired high read is fresh
  });

  it('mtime is writable', () => {
    const { c } = make();
    c.write(MTIME + 4, 4, 2);
    c.write(MTIME, 4, 7);
    expect(c.read(MTIME, 4)).toBe(7);
    expect(c.read(MTIME + 4, 4)).toBe(2);
  });

  it('MTIP follows mtime >= mtimecmp per hart', () => {
    const { c, clock, line, advance } = make();
    // reset value 0, as QEMU: MTIP is pending until software programs mtimecmp
    expect(c.read(0x4000, 4)).toBe(0);
    c.update();
    expect(line(0, MIP_MTIP_BIT)).toBe(true);
    c.write(0x4000 + 4, 4, 0xffffffff);
    expect(line(0, MIP_MTIP_BIT)).toBe(false);
    clock.resume();
    c.write(0x4008 + 4, 4, 0);
    c.write(0x4008, 4, 20000); // hart 1 at 2 ms
    expect(line(1, MIP_MTIP_BIT)).toBe(false);
    expect(c.nextDeadline()).toBe(20000);
    expect(clock.msUntil(c.nextDeadline())).toBe(2);
    advance(2);
    c.update();
    expect(line(1, MIP_MTIP_BIT)).toBe(true);
    expect(line(0, MIP_MTIP_BIT)).toBe(false);
    c.write(0x4008 + 4, 4, 1); // move the compare value far away: MTIP drops
    expect(line(1, MIP_MTIP_BIT)).toBe(false);
  });

  it('msip drives MSIP; only bit 0 is writable', () => {
    const { c, line } = make();
    c.write(4, 4, 0xffffffff);
    expect(c.read(4, 4)).toBe(1);
    expect(line(1, MIP_MSIP_BIT)).toBe(true);
    expect(line(0, MIP_MSIP_BIT)).toBe(false);
    c.write(4, 4, 0);
    expect(line(1, MIP_MSIP_BIT)).toBe(false);
  });
});
