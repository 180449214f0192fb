// NS16550A UART (the console of QEMU's virt board at 0x10000000, PLIC source 10).
//
// Register map (byte registers, reg-shift 0), from the National Semiconductor PC16550D data
// sheet, "Register Description" (table 2):
//   0 RBR (read) / THR (write) / DLL (DLAB=1)    1 IER / DLM (DLAB=1)
//   2 IIR (read) / FCR (write)                   3 LCR      4 MCR
//   5 LSR                                        6 MSR      7 SCR
// Transmission is instantaneous: a byte written to THR goes straight to the host console, so
// THR and the transmitter are always empty again by the time the guest looks (LSR.THRE/TEMT).
// Reception is fed from the host console through a host-side queue into the receiver (the
// 16-byte FIFO, or the one holding register with FIFOs off), like a terminal that only sends
// when the UART can take it (no overruns are invented).
//
// The interrupt is signalled as QEMU 7.2's hw/char/serial.c (virt's UART) signals it, because
// the PLIC makes a source pending on every high signal (plic.ts) and software built for QEMU
// relies on when that happens: the line is signalled, at the level "IIR reports an interrupt",
// after every access that updates the interrupt state (RBR read, THR write, FCR write, an IER
// write that changes IER, an IIR read reporting THR empty, an LSR read clearing OE/BI), when
// received data arrives and when the character timeout fires — never otherwise (LCR, MCR, MSR,
// SCR, DLL/DLM accesses, other IIR and LSR reads). So a THR-empty interrupt a handler leaves
// standing comes once, and a handler that reads RBR with it standing takes it again.
// Also as QEMU: the THR-empty interrupt is raised by every transmitted byte, by enabling ETBEI
// while THR is empty and by a transmit-FIFO reset, and dropped by disabling ETBEI; a received
// byte in the FIFO arms a timeout of four character times (QEMU's fifo_timeout_timer, from the
// divisor and LCR, 9600 baud until they are written), after which IIR reports a character
// timeout until RBR is read; the modem status never changes (QEMU's stdio/pty backends have no
// modem lines, and loopback records no deltas), so there is no modem status interrupt.
// Deliberate differences: in loopback the host's input waits (QEMU lets it in), and host input
// enters the receiver as soon as it has room (QEMU's backends feed it on their own thread, up
// to the trigger level): when bytes arrive is timing, not signalling.

import type { MmioDevice } from '../memory/bus.js';
import type { VirtClock } from './clock.js';

const IER_ERBFI = 0x01; // received data available
const IER_ETBEI = 0x02; // transmitter holding register empty
const IER_ELSI = 0x04;  // receiver line status

const IIR_NONE = 0x01;
const IIR_THRI = 0x02;  // THR empty
const IIR_RDI = 0x04;   // received data available (trigger level reached)
const IIR_RLSI = 0x06;  // receiver line status
const IIR_CTI = 0x0c;   // character timeout
const IIR_FIFO = 0xc0;  // FIFOs enabled

const FCR_FE = 0x01, FCR_RFR = 0x02, FCR_XFR = 0x04;

const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_BI = 0x10;
const LSR_ERRORS = 0x1e; // OE, PE, FE, BI: a receiver line status interrupt
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;

const MCR_DTR = 0x01, MCR_RTS = 0x02, MCR_OUT1 = 0x04, MCR_OUT2 = 0x08, MCR_LOOP = 0x10;
const MSR_CTS = 0x10, MSR_DSR = 0x20, MSR_RI = 0x40, MSR_DCD = 0x80;

const FIFO_SIZE = 16;
const TRIGGER_LEVELS = [1, 4, 8, 14];
/** virt's UART clock (QEMU: serial_mm_init(..., 399193, ...)); baud = BAUDBASE / divisor. */
const BAUDBASE = 399193;
/** mtime ticks (10 MHz) per nanosecond. */
const TICKS_PER_NS = 1 / 100;

export interface UartState {
  ier: number; lcr: number; mcr: number; lsr: number; scr: number; divisor: number; fcr: number;
  thrIpending: boolean; timeoutIpending: boolean;
  /** mtime of the armed character timeout (null: none). */
  timeoutAt: number | null; charTicks: number;
  rxFifo: number[]; rxHead: number; rxCount: number; rbr: number;
  /** Console input from the host not yet in the receiver (base64). */
  hostInput: string;
}

export class Uart16550 implements MmioDevice {
  private ier = 0;
  private lcr = 0;
  private mcr = MCR_OUT2;
  private lsr = LSR_THRE | LSR_TEMT;
  private scr = 0;
  private divisor = 0x0c;
  private fcr = 0;
  /** THR-empty interrupt pending (QEMU's thr_ipending). */
  private thrIpending = false;
  /** The character timeout fired with data in the FIFO and RBR was not read since. */
  private timeoutIpending = false;
  /** mtime at which the character timeout fires (Infinity: not armed). */
  private timeoutAt = Infinity;
  /** One character time in mtime ticks: QEMU's reset value, 10 bits at 9600 baud. */
  private charTicks = Math.trunc(1e9 / 9600) * 10 * TICKS_PER_NS;
  private readonly rxFifo = new Uint8Array(FIFO_SIZE);
  private rxHead = 0;
  private rxCount = 0;
  /** The receiver holding register with FIFOs off: the last byte received. */
  private rbr = 0;
  /** Bytes from the host not yet in the receiver (chunks plus read position in the first). */
  private readonly hostQueue: Uint8Array[] = [];
  private hostPos = 0;

  /** @param output bytes transmitted by the guest; @param irq signals the interrupt line at a
   *  level (every call is a signal, see above); @param clock the machine's timebase. */
  constructor(private readonly output: (byte: number) => void, private readonly irq: (level: boolean) => void,
              private readonly clock: Pick<VirtClock, 'mtime'>) {}

  /** Console input from the host. */
  receive(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.hostQueue.push(bytes.slice());
    if (this.refill()) this.signal();
  }

  /** Bytes waiting on the host side (not yet in the receiver). */
  pendingInput(): number {
    let n = this.hostQueue.length === 0 ? 0 : -this.hostPos;
    for (const c of this.hostQueue) n += c.length;
    return n;
  }

  /** mtime at which the character timeout fires (Infinity when not armed). */
  nextDeadline(): number {
    return this.timeoutAt;
  }

  /** Fires the character timeout if its time has come (the board calls this between slices). */
  poll(): void {
    if (this.timeoutAt === Infinity || this.timeoutAt > this.clock.mtime()) return;
    this.timeoutAt = Infinity;
    if (this.rxCount > 0) {
      this.timeoutIpending = true;
      this.signal();
    }
  }

  /** Saved state: every register, the receiver (FIFO or holding register), the character
   *  timeout (an mtime, which continues across a restore) and the host input not yet received. */
  saveState(): UartState {
    const pending = Buffer.concat(this.hostQueue.map((c, i) => (i === 0 ? c.subarray(this.hostPos) : c)));
    return {
      ier: this.ier, lcr: this.lcr, mcr: this.mcr, lsr: this.lsr, scr: this.scr, divisor: this.divisor, fcr: this.fcr,
      thrIpending: this.thrIpending, timeoutIpending: this.timeoutIpending,
      timeoutAt: this.timeoutAt === Infinity ? null : this.timeoutAt, charTicks: this.charTicks,
      rxFifo: Array.from(this.rxFifo), rxHead: this.rxHead, rxCount: this.rxCount, rbr: this.rbr, hostInput: pending.toString('base64'),
    };
  }

  /** Restores the registers; the PLIC keeps its own pending state, so nothing is signalled. */
  loadState(s: UartState): void {
    this.ier = s.ier; this.lcr = s.lcr; this.mcr = s.mcr; this.lsr = s.lsr; this.scr = s.scr; this.divisor = s.divisor; this.fcr = s.fcr;
    this.thrIpending = s.thrIpending; this.timeoutIpending = s.timeoutIpending;
    this.timeoutAt = s.timeoutAt === null ? Infinity : s.timeoutAt; this.charTicks = s.charTicks;
    this.rxFifo.set(s.rxFifo); this.rxHead = s.rxHead; this.rxCount = s.rxCount; this.rbr = s.rbr;
    this.hostQueue.length = 0;
    this.hostPos = 0;
    const input = Buffer.from(s.hostInput, 'base64');
    if (input.length > 0) this.hostQueue.push(new Uint8Array(input));
  }

  read(offset: number, _size: 1 | 2 | 4): number {
    const dlab = (this.lcr & 0x80) !== 0;
    switch (offset & 7) {
      case 0: {
        if (dlab) return this.divisor & 0xff;
        let b: number;
        if (this.fifoEnabled()) {
          b = 0;
          if (this.rxCount > 0) {
            b = this.rxFifo[this.rxHead];
            this.rxHead = (this.rxHead + 1) % FIFO_SIZE;
            this.rxCount--;
          }
          if (this.rxCount === 0) this.lsr &= ~(LSR_DR | LSR_BI);
          else this.armTimeout();
          this.timeoutIpending = false;
        } else {
          b = this.rbr;
          this.lsr &= ~(LSR_DR | LSR_BI);
        }
        this.refill();
        this.signal();
        return b;
      }
      case 1:
        return dlab ? this.divisor >>> 8 : this.ier;
      case 2: {
        const iir = this.iir();
        // Reading IIR while it reports THR empty clears that interrupt (16550D, "IIR").
        if ((iir & 0x0f) === IIR_THRI) {
          this.thrIpending = false;
          this.signal();
        }
        return iir;
      }
      case 3:
        return this.lcr;
      case 4:
        return this.mcr;
      case 5: {
        const v = this.lsr;
        // Reading LSR clears the overrun and break indications (we never set PE or FE).
        if (this.lsr & (LSR_OE | LSR_BI)) {
          this.lsr &= ~(LSR_OE | LSR_BI);
          this.signal();
        }
        return v;
      }
      case 6:
        return this.modemStatus();
      default:
        return this.scr;
    }
  }

  write(offset: number, _size: 1 | 2 | 4, value: number): void {
    value &= 0xff;
    const dlab = (this.lcr & 0x80) !== 0;
    switch (offset & 7) {
      case 0:
        if (dlab) {
          this.divisor = (this.divisor & 0xff00) | value;
          this.updateCharTime();
          return;
        }
        if (this.mcr & MCR_LOOP) this.receiveByte(value); // loopback: TX is wired back to RX
        else this.output(value);
        // The byte is gone at once: THR is empty again and raises its interrupt.
        this.lsr |= LSR_THRE | LSR_TEMT;
        this.thrIpending = true;
        this.signal();
        return;
      case 1: {
        if (dlab) {
          this.divisor = (this.divisor & 0x00ff) | (value << 8);
          this.updateCharTime();
          return;
        }
        const changed = (this.ier ^ value) & 0x0f;
        this.ier = value & 0x0f;
        // Turning ETBEI on while THR is empty raises the THRE interrupt (as real 16550s do, and
        // what Linux's 8250 driver relies on to start transmitting); turning it off drops it.
        if (changed & IER_ETBEI) this.thrIpending = (this.ier & IER_ETBEI) !== 0 && (this.lsr & LSR_THRE) !== 0;
        if (changed) this.signal();
        return;
      }
      case 2: {
        // Changing the FIFO enable clears both FIFOs (16550D, "FCR").
        if ((value ^ this.fcr) & FCR_FE) value |= FCR_RFR | FCR_XFR;
        if (value & FCR_RFR) {
          this.rxCount = 0;
          this.rxHead = 0;
          this.lsr &= ~(LSR_DR | LSR_BI);
          this.timeoutAt = Infinity;
          this.timeoutIpending = false;
        }
        if (value & FCR_XFR) {
          // Nothing is ever queued for transmission; an emptied FIFO raises THR empty.
          this.lsr |= LSR_THRE;
          this.thrIpending = true;
        }
        this.fcr = value & 0xc9;
        this.refill();
        this.signal();
        return;
      }
      case 3:
        this.lcr = value;
        this.updateCharTime();
        return;
      case 4: {
        const leavingLoop = (this.mcr & MCR_LOOP) !== 0 && (value & MCR_LOOP) === 0;
        this.mcr = value & 0x1f;
        if (leavingLoop && this.refill()) this.signal(); // the line is connected again
        return;
      }
      case 5:
        return; // LSR is read-only (writes are for factory testing only)
      case 6:
        return;
      default:
        this.scr = value;
    }
  }

  /** In loopback the modem inputs follow the outputs (16550D, MCR bit 4); otherwise a terminal
   *  is attached and ready. */
  private modemStatus(): number {
    if (!(this.mcr & MCR_LOOP)) return MSR_DCD | MSR_DSR | MSR_CTS;
    const m = this.mcr;
    return ((m & MCR_RTS) ? MSR_CTS : 0) | ((m & MCR_DTR) ? MSR_DSR : 0) |
      ((m & MCR_OUT1) ? MSR_RI : 0) | ((m & MCR_OUT2) ? MSR_DCD : 0);
  }

  private fifoEnabled(): boolean { return (this.fcr & FCR_FE) !== 0; }

  /** QEMU's serial_update_parameters: start bit, 5-8 data bits, parity, 1-2 stop bits at
   *  BAUDBASE / divisor (divisor 0: BAUDBASE / 32768). */
  private updateCharTime(): void {
    const frame = 1 + (this.lcr & 0x03) + 5 + ((this.lcr & 0x04) ? 2 : 1) + ((this.lcr & 0x08) ? 1 : 0);
    const baud = this.divisor === 0 ? BAUDBASE / 32768 : BAUDBASE / this.divisor;
    this.charTicks = Math.trunc(1e9 / baud * frame) * TICKS_PER_NS;
  }

  private armTimeout(): void {
    this.timeoutAt = this.clock.mtime() + 4 * this.charTicks;
  }

  /** A byte reaches the receiver: with FIFOs on it is queued (dropped with OE when full) and
   *  arms the character timeout; with FIFOs off it replaces the held byte (OE if unread). */
  private receiveByte(b: number): void {
    if (this.fifoEnabled()) {
      if (this.rxCount < FIFO_SIZE) {
        this.rxFifo[(this.rxHead + this.rxCount) % FIFO_SIZE] = b;
        this.rxCount++;
      } else {
        this.lsr |= LSR_OE;
      }
      this.armTimeout();
    } else {
      if (this.lsr & LSR_DR) this.lsr |= LSR_OE;
      this.rbr = b;
    }
    this.lsr |= LSR_DR;
  }

  /** Moves host bytes into the receiver while it has room (not in loopback: the line is
   *  disconnected); returns whether any moved. Never overruns. */
  private refill(): boolean {
    if (this.mcr & MCR_LOOP) return false;
    let moved = false;
    while (this.hostQueue.length > 0 && (this.fifoEnabled() ? this.rxCount < FIFO_SIZE : (this.lsr & LSR_DR) === 0)) {
      const chunk = this.hostQueue[0];
      this.receiveByte(chunk[this.hostPos++]);
      moved = true;
      if (this.hostPos >= chunk.length) { this.hostQueue.shift(); this.hostPos = 0; }
    }
    return moved;
  }

  /** The highest-priority pending interrupt (16550D, table "Interrupt Control Functions"; the
   *  character timeout as QEMU reports it). */
  private iir(): number {
    const fifo = this.fifoEnabled() ? IIR_FIFO : 0;
    if ((this.ier & IER_ELSI) && (this.lsr & LSR_ERRORS)) return fifo | IIR_RLSI;
    if (this.ier & IER_ERBFI) {
      if (this.timeoutIpending) return fifo | IIR_CTI;
      if ((this.lsr & LSR_DR) && (!this.fifoEnabled() || this.rxCount >= TRIGGER_LEVELS[this.fcr >>> 6])) return fifo | IIR_RDI;
    }
    if ((this.ier & IER_ETBEI) && this.thrIpending) return fifo | IIR_THRI;
    return fifo | IIR_NONE;
  }

  /** Signals the interrupt line at its current level. On the virt board it is wired straight
   *  to the PLIC (OUT2 gating is a PC convention that QEMU's model does not apply either). */
  private signal(): void {
    this.irq((this.iir() & IIR_NONE) === 0);
  }
}
