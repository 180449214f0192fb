// NS16550A against the PC16550D data sheet's register behaviour, signalling its interrupt as
// QEMU 7.2's serial model does (issue 18).
import { describe, expect, it } from 'vitest';
import { Uart16550 } from '../../src/devices/uart16550.js';

function make() {
  const out: number[] = [];
  const irq: boolean[] = [];
  const clock = { t: 0, mtime() { return this.t; } };
  const u = new Uart16550((b) => out.push(b), (l) => irq.push(l), clock);
  const level = () => irq.length > 0 && irq[irq.length - 1];
  /** Lets mtime run on by `ms` and fires what is due. */
  const advance = (ms: number) => { clock.t += ms * 10_000; u.poll(); };
  return { u, out, irq, level, advance };
}
const RBR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

describe('uart16550', () => {
  it('transmits THR bytes and keeps THRE/TEMT set', () => {
    const { u, out } = make();
    for (const c of 'hi\n') u.write(0, 1, c.charCodeAt(0));
    expect(String.fromCharCode(...out)).toBe('hi\n');
    expect(u.read(LSR, 1) & 0x60).toBe(0x60);
  });

  it('divisor latch replaces RBR/IER while LCR.DLAB is set', () => {
    const { u, out } = make();
    u.write(LCR, 1, 0x83);
    u.write(0, 1, 0x01);
    u.write(1, 1, 0x02);
    expect(u.read(0, 1)).toBe(0x01);
    expect(u.read(1, 1)).toBe(0x02);
    expect(out).toEqual([]); // nothing was transmitted
    u.write(LCR, 1, 0x03);
    expect(u.read(IER, 1)).toBe(0);
    expect(u.read(LCR, 1)).toBe(0x03);
  });

  it('receives host input through the 16-byte FIFO with LSR.DR', () => {
    const { u } = make();
    u.write(FCR, 1, 0x07);
    expect(u.read(LSR, 1) & 1).toBe(0);
    const text = 'abcdefghijklmnopqrstuvwxyz';
    u.receive(new TextEncoder().encode(text));
    let got = '';
    while (u.read(LSR, 1) & 1) got += String.fromCharCode(u.read(RBR, 1));
    expect(got).toBe(text); // the host queue refills the FIFO as the guest drains it
    expect(u.pendingInput()).toBe(0);
  });

  it('without FIFO holds one byte at a time', () => {
    const { u } = make();
    u.receive(new Uint8Array([1, 2, 3]));
    expect(u.pendingInput()).toBe(2);
    expect(u.read(RBR, 1)).toBe(1);
    expect(u.pendingInput()).toBe(1);
  });

  it('raises RX interrupts by trigger level, and after four character times by timeout', () => {
    const { u, level, advance } = make();
    u.write(FCR, 1, 0x81); // FIFO on, trigger 8
    u.write(IER, 1, 0x01);
    expect(level()).toBe(false);
    expect(u.read(IIR, 1)).toBe(0xc1);
    u.receive(new Uint8Array([65, 66]));
    expect(level()).toBe(false);       // below the trigger level
    expect(u.read(IIR, 1)).toBe(0xc1);
    advance(4);                        // 9600 baud until programmed: 4 characters take 4.2 ms
    expect(level()).toBe(false);
    expect(u.nextDeadline()).toBeLessThan(Infinity);
    advance(0.5);
    expect(level()).toBe(true);
    expect(u.read(IIR, 1)).toBe(0xcc); // timeout indication
    u.receive(new Uint8Array(8).fill(67));
    expect(u.read(IIR, 1)).toBe(0xcc); // still the timeout (it outranks data available) ...
    u.read(RBR, 1);
    expect(u.read(IIR, 1)).toBe(0xc4); // ... until RBR is read: 9 >= 8, data available
    while (u.read(LSR, 1) & 1) u.read(RBR, 1);
    expect(level()).toBe(false);
    expect(u.read(IIR, 1) & 0x0f).toBe(1);
    advance(10);
    expect(level()).toBe(false);       // a timeout with an empty FIFO indicates nothing
  });

  it('the character timeout follows the divisor and LCR (QEMU: baud base 399193)', () => {
    const { u, level, advance } = make();
    u.write(LCR, 1, 0x83);
    u.write(0, 1, 2);                  // 199596 baud, 10-bit frames: 50 us a character
    u.write(1, 1, 0);
    u.write(LCR, 1, 0x03);
    u.write(FCR, 1, 0xc1);
    u.write(IER, 1, 0x01);
    u.receive(new Uint8Array([1]));
    advance(0.19);
    expect(level()).toBe(false);
    advance(0.02);
    expect(level()).toBe(true);
  });

  it('THR-empty interrupt: raised by enabling ETBEI, cleared by reading IIR, raised again by a write', () => {
    const { u, level } = make();
    u.write(IER, 1, 0x02);
    expect(level()).toBe(true);
    expect(u.read(IIR, 1) & 0x0f).toBe(0x02);
    expect(level()).toBe(false);
    expect(u.read(IIR, 1) & 0x0f).toBe(0x01);
    u.write(0, 1, 0x41);
    expect(level()).toBe(true);
    u.write(IER, 1, 0x00);
    expect(level()).toBe(false);
  });

  it('RX data has priority over THR empty in IIR', () => {
    const { u } = make();
    u.write(IER, 1, 0x03);
    u.receive(new Uint8Array([1]));
    expect(u.read(IIR, 1) & 0x0f).toBe(0x04);
    u.read(RBR, 1);
    expect(u.read(IIR, 1) & 0x0f).toBe(0x02);
  });

  it('loopback sends TX to RX and mirrors MCR into MSR, without deltas (as QEMU)', () => {
    const { u, out, irq } = make();
    u.write(IER, 1, 0x08);
    u.write(MCR, 1, 0x10 | 0x0f);
    expect(u.read(MSR, 1)).toBe(0xf0);
    u.write(0, 1, 0x5a);
    expect(out).toEqual([]);
    expect(u.read(LSR, 1) & 1).toBe(1);
    expect(u.read(RBR, 1)).toBe(0x5a);
    u.write(MCR, 1, 0x10);
    expect(u.read(MSR, 1)).toBe(0x00);
    expect(irq.every((l) => !l)).toBe(true); // no modem status interrupt
  });

  it('an overrun with FIFOs off keeps the newest byte; reading LSR clears OE and signals', () => {
    const { u, irq, level } = make();
    u.write(MCR, 1, 0x18);
    u.write(0, 1, 0x41);
    u.write(0, 1, 0x42);
    u.write(IER, 1, 0x04);
    expect(level()).toBe(true);
    expect(u.read(IIR, 1)).toBe(0x06);
    const n = irq.length;
    expect(u.read(LSR, 1)).toBe(0x63); // DR, OE, THRE, TEMT
    expect(irq.length).toBe(n + 1);
    expect(level()).toBe(false);
    expect(u.read(LSR, 1)).toBe(0x61); // nothing left to clear: no signal
    expect(irq.length).toBe(n + 1);
    expect(u.read(RBR, 1)).toBe(0x42);
  });

  it('signals after the accesses QEMU signals after, and only those', () => {
    const { u, irq } = make();
    const signals = (f: () => void) => { const n = irq.length; f(); return irq.length - n; };
    expect(signals(() => u.write(IER, 1, 0x02))).toBe(1);  // IER changed
    expect(signals(() => u.write(IER, 1, 0x02))).toBe(0);  // unchanged
    expect(signals(() => u.read(LSR, 1))).toBe(0);
    expect(signals(() => u.read(MSR, 1))).toBe(0);
    expect(signals(() => u.write(LCR, 1, 0x03))).toBe(0);
    expect(signals(() => u.write(MCR, 1, 0x0b))).toBe(0);
    expect(signals(() => u.write(SCR, 1, 1))).toBe(0);
    expect(signals(() => u.read(RBR, 1))).toBe(1);         // even with nothing received
    expect(signals(() => u.write(FCR, 1, 0))).toBe(1);     // even unchanged
    expect(signals(() => u.write(0, 1, 0x41))).toBe(1);
    expect(irq[irq.length - 1]).toBe(true);                // THR empty again
    expect(signals(() => u.read(IIR, 1))).toBe(1);         // reports THR empty: cleared
    expect(signals(() => u.read(IIR, 1))).toBe(0);         // reports nothing
    expect(signals(() => u.receive(new Uint8Array([1])))).toBe(1);
    expect(signals(() => u.receive(new Uint8Array([2])))).toBe(0); // no room: waits on the host side
    expect(u.pendingInput()).toBe(1);
  });

  it('ETBEI off drops a pending THR-empty interrupt; a transmit FIFO reset raises it', () => {
    const { u, level } = make();
    u.write(IER, 1, 0x02);
    expect(level()).toBe(true);
    u.write(IER, 1, 0x00);
    expect(level()).toBe(false);
    u.write(IER, 1, 0x01);
    u.write(IER, 1, 0x03);             // ETBEI on again while THR is empty
    expect(u.read(IIR, 1) & 0x0f).toBe(0x02);
    expect(level()).toBe(false);
    u.write(FCR, 1, 0x04);             // clear the transmit FIFO
    expect(level()).toBe(true);
    expect(u.read(IIR, 1) & 0x0f).toBe(0x02);
  });

  it('MSR reports a ready terminal outside loopback; SCR is scratch', () => {
    const { u } = make();
    expect(u.read(MSR, 1)).toBe(0xb0);
    u.write(SCR, 1, 0xa5);
    expect(u.read(SCR, 1)).toBe(0xa5);
  });
});
