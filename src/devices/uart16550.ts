// NS16550A UART (the console of QEMU's virt board at 0x10000000, PLIC source 10).
//
// Register map (byte registers, reg-shift 0), from the National Semiconductor PC16550D data
// sheet, "Register Description" (table 2):
//   0 RBR (read) / THR (write) / DLL (DLAB=1)    1 IER / DLM (DLAB=1)
//   2 IIR (read) / FCR (write)                   3 LCR      4 MCR
//   5 LSR                                        6 MSR      7 SCR
// Transmission is instantaneous: a byte written to THR goes straight to the host console, so
// THR and the transmitter are always empty again by the time the guest looks (LSR.THRE/TEMT).
// Reception is fed from the host console through a host-side queue into the 16-byte RX FIFO,
// like a terminal that only sends when the UART can take it (no overruns are invented).

import type { MmioDevice } from '../memory/bus.js';

const IER_ERBFI = 0x01; // received data available
const IER_ETBEI = 0x02; // transmitter holding register empty
const IER_ELSI = 0x04;  // receiver line status
const IER_EDSSI = 0x08; // modem status

const IIR_NONE = 0x01;
const IIR_MSI = 0x00;   // modem status
const IIR_THRI = 0x02;  // THR empty
const IIR_RDI = 0x04;   // received data available (trigger level reached)
const IIR_RLSI = 0x06;  // receiver line status
const IIR_CTI = 0x0c;   // character timeout (data below the trigger level)
const IIR_FIFO = 0xc0;  // FIFOs enabled

const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_BI_FE_PE = 0x1c;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;

const MCR_DTR = 0x01, MCR_RTS = 0x02, MCR_OUT1 = 0x04, MCR_OUT2 = 0x08, MCR_LOOP = 0x10;
const MSR_DCTS = 0x01, MSR_DDSR = 0x02, MSR_TERI = 0x04, MSR_DDCD = 0x08;
const MSR_CTS = 0x10, MSR_DSR = 0x20, MSR_RI = 0x40, MSR_DCD = 0x80;
const MSR_DELTAS = MSR_DCTS | MSR_DDSR | MSR_TERI | MSR_DDCD;

const FIFO_SIZE = 16;
const TRIGGER_LEVELS = [1, 4, 8, 14];

export class Uart16550 implements MmioDevice {
  private ier = 0;
  private lcr = 0x03;     // 8N1 (the reset value does not matter to software; QEMU uses 8N1 too)
  private mcr = MCR_OUT2;
  private lsr = LSR_THRE | LSR_TEMT;
  private msr = MSR_DCD | MSR_DSR | MSR_CTS; // a terminal is attached and ready
  private scr = 0;
  private dll = 0x0c;
  private dlm = 0;
  private fcr = 0;
  /** THR-empty interrupt pending: set when THR empties (or ETBEI is enabled while empty),
   *  cleared by reading IIR while it is the reported source, or by writing THR (16550D, IIR table). */
  private thrIpending = false;
  private readonly rxFifo = new Uint8Array(FIFO_SIZE);
  private rxHead = 0;
  private rxCount = 0;
  /** Bytes from the host not yet in the FIFO (chunks plus read position in the first). */
  private readonly hostQueue: Uint8Array[] = [];
  private hostPos = 0;
  private irqLevel = false;

  /** @param output bytes transmitted by the guest; @param irq level of the UART's interrupt line */
  constructor(private readonly output: (byte: number) => void, private readonly irq: (level: boolean) => void) {}

  /** Console input from the host. */
  receive(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.hostQueue.push(bytes.slice());
    this.refill();
    this.update();
  }

  /** Bytes waiting on the host side (not yet in the FIFO). */
  pendingInput(): number {
    let n = this.hostQueue.length === 0 ? 0 : -this.hostPos;
    for (const c of this.hostQueue) n += c.length;
    return n;
  }

  read(offset: number, _size: 1 | 2 | 4): number {
    const dlab = (this.lcr & 0x80) !== 0;
    switch (offset & 7) {
      case 0: {
        if (dlab) return this.dll;
        if (this.rxCount === 0) return 0;
        const b = this.rxFifo[this.rxHead];
        this.rxHead = (this.rxHead + 1) % FIFO_SIZE;
        this.rxCount--;
        if (this.rxCount === 0) this.lsr &= ~LSR_DR;
        this.refill();
        this.update();
        return b;
      }
      case 1:
        return dlab ? this.dlm : this.ier;
      case 2: {
        const iir = this.iir();
        // Reading IIR while it reports THR empty clears that interrupt (16550D, "IIR").
        if ((iir & 0x0f) === IIR_THRI) {
          this.thrIpending = false;
          this.update();
        }
        return iir;
      }
      case 3:
        return this.lcr;
      case 4:
        return this.mcr;
      case 5: {
        const v = this.lsr;
        // Error bits (OE, PE, FE, BI) clear on read; we never set them, but keep the semantics.
        this.lsr &= ~(LSR_OE | LSR_BI_FE_PE);
        return v;
      }
      case 6: {
        const v = this.modemStatus();
        this.msr &= ~MSR_DELTAS; // delta bits clear on read
        this.update();
        return v;
      }
      default:
        return this.scr;
    }
  }

  write(offset: number, _size: 1 | 2 | 4, value: number): void {
    value &= 0xff;
    const dlab = (this.lcr & 0x80) !== 0;
    switch (offset & 7) {
      case 0:
        if (dlab) { this.dll = value; return; }
        if (this.mcr & MCR_LOOP) this.pushRx(value); // loopback: TX is wired back to RX
        else this.output(value);
        // The byte is gone at once: THR is empty again and raises its interrupt.
        this.lsr |= LSR_THRE | LSR_TEMT;
        this.thrIpending = true;
        this.update();
        return;
      case 1: {
        if (dlab) { this.dlm = value; return; }
        const old = this.ier;
        this.ier = value & 0x0f;
        // Enabling ETBEI while THR is empty raises the THRE interrupt (as on real 16550s, and
        // what Linux's 8250 driver relies on to start transmitting).
        if (!(old & IER_ETBEI) && (this.ier & IER_ETBEI) && (this.lsr & LSR_THRE)) this.thrIpending = true;
        this.update();
        return;
      }
      case 2: {
        const wasEnabled = this.fcr & 1;
        if ((value & 1) !== wasEnabled) {
          // Changing the FIFO enable clears both FIFOs (16550D, "FCR").
          this.clearRx();
        }
        if (value & 0x02) this.clearRx();
        // bit 2 (clear TX FIFO): nothing is ever queued for transmission.
        this.fcr = value & 0xc9;
        this.refill();
        this.update();
        return;
      }
      case 3:
        this.lcr = value;
        return;
      case 4: {
        const old = this.mcr;
        this.mcr = value & 0x1f;
        if ((old ^ this.mcr) & MCR_LOOP) this.refill();
        if (this.mcr & MCR_LOOP) {
          // In loopback the modem inputs follow the outputs; record deltas like real hardware.
          const before = this.loopMsr(old);
          const after = this.loopMsr(this.mcr);
          if ((before ^ after) & MSR_CTS) this.msr |= MSR_DCTS;
          if ((before ^ after) & MSR_DSR) this.msr |= MSR_DDSR;
          if ((before & MSR_RI) && !(after & MSR_RI)) this.msr |= MSR_TERI;
          if ((before ^ after) & MSR_DCD) this.msr |= MSR_DDCD;
        }
        this.update();
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

  private loopMsr(mcr: number): number {
    return ((mcr & MCR_RTS) ? MSR_CTS : 0) | ((mcr & MCR_DTR) ? MSR_DSR : 0) |
      ((mcr & MCR_OUT1) ? MSR_RI : 0) | ((mcr & MCR_OUT2) ? MSR_DCD : 0);
  }

  private modemStatus(): number {
    const lines = (this.mcr & MCR_LOOP) ? this.loopMsr(this.mcr) : (MSR_DCD | MSR_DSR | MSR_CTS);
    return lines | (this.msr & MSR_DELTAS);
  }

  private fifoEnabled(): boolean { return (this.fcr & 1) !== 0; }

  private capacity(): number { return this.fifoEnabled() ? FIFO_SIZE : 1; }

  private clearRx(): void {
    this.rxCount = 0;
    this.rxHead = 0;
    this.lsr &= ~LSR_DR;
  }

  private pushRx(b: number): void {
    if (this.rxCount >= this.capacity()) {
      this.lsr |= LSR_OE; // overrun: only reachable in loopback, the host queue waits for room
      return;
    }
    this.rxFifo[(this.rxHead + this.rxCount) % FIFO_SIZE] = b;
    this.rxCount++;
    this.lsr |= LSR_DR;
  }

  /** Moves host bytes into the FIFO while it has room (not in loopback: the line is disconnected). */
  private refill(): void {
    if (this.mcr & MCR_LOOP) return;
    while (this.hostQueue.length > 0 && this.rxCount < this.capacity()) {
      const chunk = this.hostQueue[0];
      this.pushRx(chunk[this.hostPos++]);
      if (this.hostPos >= chunk.length) { this.hostQueue.shift(); this.hostPos = 0; }
    }
  }

  /** The highest-priority pending interrupt (16550D, table "Interrupt Control Functions"). */
  private iir(): number {
    const fifo = this.fifoEnabled() ? IIR_FIFO : 0;
    if ((this.ier & IER_ELSI) && (this.lsr & (LSR_OE | LSR_BI_FE_PE))) return fifo | IIR_RLSI;
    if ((this.ier & IER_ERBFI) && this.rxCount > 0) {
      if (!this.fifoEnabled() || this.rxCount >= TRIGGER_LEVELS[this.fcr >>> 6]) return fifo | IIR_RDI;
      // Below the trigger level the 16550 reports a character timeout once the line is quiet;
      // our host queue has already delivered everything it could, so the line is quiet now.
      return fifo | IIR_CTI;
    }
    if ((this.ier & IER_ETBEI) && this.thrIpending) return fifo | IIR_THRI;
    if ((this.ier & IER_EDSSI) && (this.msr & MSR_DELTAS)) return fifo | IIR_MSI;
    return fifo | IIR_NONE;
  }

  private update(): void {
    // On the virt board the interrupt output is wired straight to the PLIC (OUT2 gating is a
    // PC convention that QEMU's model does not apply either).
    const level = (this.iir() & IIR_NONE) === 0;
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq(level);
    }
  }
}
