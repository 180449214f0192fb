// Plugging a network card into a virtio-mmio slot of the board: the virtio-net model, its
// transport, and the host side (NetBackend) that src/vm chose for it.

import type { GuestRam } from '../../memory/ram.js';
import type { NetBackend } from '../../net/nic.js';
import { VirtioMmioDevice } from './mmio.js';
import { VirtioNet } from './net.js';

export interface VirtioNetSlotOptions {
  readonly mac: Uint8Array;
  readonly backend: NetBackend;
  readonly ram: GuestRam;
  /** The slot's PLIC source level. */
  readonly irq: (level: boolean) => void;
  readonly log: (message: string) => void;
  /** Slot base address and the NIC's index, for messages. */
  readonly base: number;
  readonly index: number;
}

export class VirtioNetSlot {
  readonly transport: VirtioMmioDevice;
  readonly net: VirtioNet;
  private closed = false;

  constructor(private readonly opts: VirtioNetSlotOptions) {
    const name = `virtio-net nic${opts.index} @0x${opts.base.toString(16)}`;
    this.net = new VirtioNet({ mac: opts.mac, backend: opts.backend, log: (m) => opts.log(`${name}: ${m}`) });
    this.transport = new VirtioMmioDevice({ ram: opts.ram, model: this.net, setIrq: opts.irq, log: opts.log, name });
    this.net.transport = this.transport;
  }

  setPaused(paused: boolean): void {
    this.net.setPaused(paused);
  }

  /** Releases the host side (sockets, listeners, timers). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.opts.backend.close();
  }
}
