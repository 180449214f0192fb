// NS16550A against the PC16550D data sheet's register behaviour.
import { describe, expect, it } from 'vitest';
import { Uart16550 } from '../../src/devices/uart16550.js';

function make() {
  const out: number[] = [];
  const irq: boolean[] = [];
  const u = new Uart16550((b) => out.push(b), (l) => irq.push(l));
  const level = () => irq.length > 0 && irq[irq.length - 1];
  return { u, out, irq, level };
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

  it('raises RX interrupts by trigger level and character timeout', () => {
    const { u, level } = make();
    u.write(FCR, 1, 0x81); // FIFO on, trigger 8
    u.write(IER, 1, 0x01);
    expect(level()).toBe(false);
    expect(u.read(IIR, 1)).toBe(0xc1);
    u.receive(new Uint8Array([65, 66]));
    expect(level()).toBe(true);
    expect(u.read(IIR, 1)).toBe(0xcc); // below trigger: timeout indication
    u.receive(new Uint8Array(8).fill(67));
    expect(u.read(IIR, 1)).toBe(0xc4); // 10 >= 8: data available
    while (u.read(LSR, 1) & 1) u.read(RBR, 1);
    expect(level()).toBe(false);
    expect(u.read(IIR, 1) & 0x0f).toBe(1);
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

  it('loopback sends TX to RX and mirrors MCR into MSR', () => {
    const { u, out } = make();
    u.write(MCR, 1, 0x10 | 0x0f);
    expect(u.read(MSR, 1) & 0xf0).toBe(0xf0);
    u.write(0, 1, 0x5a);
    expect(out).toEqual([]);
    expect(u.read(LSR, 1) & 1).toBe(1);
    expect(u.read(RBR, 1)).toBe(0x5a);
    u.write(MCR, 1, 0x10);
    // all four lines dropped: DCTS, DDSR, DDCD, and TERI because RI fell; no line is asserted
    expect(u.read(MSR, 1)).toBe(0x0f);
    expect(u.read(MSR, 1)).toBe(0x00); // deltas clear on read
  });

  it('MSR reports a ready terminal outside loopback; SCR is scratch', () => {
    const { u } = make();
    expect(u.read(MSR, 1)).toBe(0xb0);
    u.write(SCR, 1, 0xa5);
    expect(u.read(SCR, 1)).toBe(0xa5);
  });
});
