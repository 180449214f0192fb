// A NIC on a switch network, seen from the VM's worker: its frames cross to the daemon's switch
// over a MessagePort (the switch joins NICs of VMs in different worker threads), and frames from
// the switch wait here, a bounded number, for the guest's receive buffers (a switch drops what it
// cannot deliver; TCP in the guests sends it again). No offloads: the other guests on the switch
// may not take them.

import type { MessagePort } from 'node:worker_threads';
import type { GuestNic, NetBackend } from './nic.js';
import { MAX_FRAME, MIN_FRAME } from './switch.js';

/** Frames from the switch held while the guest has no receive buffer. */
const MAX_QUEUED = 256;

export class SwitchPortBackend implements NetBackend {
  readonly offloads = false;
  private nic: GuestNic | null = null;
  private readonly queue: Uint8Array[] = [];
  private dropped = 0;
  private closed = false;

  constructor(private readonly port: MessagePort, private readonly log: (m: string) => void, private readonly name: string) {
    port.on('message', (frame: unknown) => {
      if (frame instanceof Uint8Array) this.receive(frame);
    });
  }

  attach(nic: GuestNic): void {
    this.nic = nic;
  }

  transmit(frame: Uint8Array): void {
    if (this.closed || frame.length < MIN_FRAME || frame.length > MAX_FRAME) return;
    // A copy of its own (the card reuses its buffer), handed over rather than cloned again.
    const copy = frame.slice();
    this.port.postMessage(copy, [copy.buffer]);
  }

  private receive(frame: Uint8Array): void {
    if (this.closed) return;
    if (this.queue.length === 0 && this.nic?.deliver(frame)) return;
    if (this.queue.length >= MAX_QUEUED) {
      if (this.dropped++ % 1000 === 0) this.log(`${this.name}: the guest does not take its frames; dropped ${this.dropped} so far`);
      return;
    }
    this.queue.push(frame);
  }

  rxSpace(): void {
    const nic = this.nic;
    if (!nic) return;
    while (this.queue.length > 0 && nic.deliver(this.queue[0])) this.queue.shift();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.port.close();
  }
}
