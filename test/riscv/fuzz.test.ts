// Robustness: random instruction streams (any encoding, any CSR, any address) must never make the
// hart throw in the host (issue 2: "nothing a guest does can crash the host process"). The trap
// handler skips the faulting instruction; the random code is free to rewrite CSRs, page tables,
// the handler itself or the code it runs.
import { describe, expect, test } from 'vitest';
import { makeMachine, RAM_BASE } from './harness.js';

function xorshift(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x >>> 0; };
}

describe('random instruction streams', () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    test(`seed ${seed}: the host never throws`, () => {
      const m = makeMachine({ ramMiB: 4 });
      const h = m.harts[0];
      const rnd = xorshift(seed * 0x9e3779b9);
      // handler at RAM_BASE: csrr t0,mepc; addi t0,t0,2; csrw mepc,t0; mret  (steps by 2: any alignment works)
      const handler = [0x341022f3, 0x00228293, 0x34129073, 0x30200073];
      const words = new Uint8Array(64 * 1024);
      const dv = new DataView(words.buffer);
      for (let i = 0; i < words.length; i += 4) {
        let w = rnd();
        // bias towards real opcodes so that loads, stores, CSRs, AMOs and jumps are common
        const ops = [0x03, 0x13, 0x23, 0x33, 0x37, 0x17, 0x1b, 0x3b, 0x63, 0x67, 0x6f, 0x73, 0x2f, 0x0f, 0x07, 0x27, 0x53];
        if ((w & 0xf0000000) !== 0xf0000000) w = (w & ~0x7f) | ops[w % ops.length];
        dv.setUint32(i, w >>> 0, true);
      }
      m.mem.ram.write(RAM_BASE + 0x10000, words);
      const hb = new Uint8Array(16);
      handler.forEach((w, i) => new DataView(hb.buffer).setUint32(i * 4, w, true));
      m.mem.ram.write(RAM_BASE, hb);
      h.setX(5, 0); // t0
      h.writeCsr(0x305, BigInt(RAM_BASE));
      h.setPc(RAM_BASE + 0x10000);
      let retired = 0;
      for (let k = 0; k < 200 && m.exit === null; k++) {
        retired += h.run(10_000);
        if (h.waiting) h.setInterruptLevel(7, !((h.mip >> 7) & 1)); // toggle MTIP to wake it
        // keep the handler and the trap vector sane so that the run keeps exploring
        m.mem.ram.write(RAM_BASE, hb);
        h.writeCsr(0x305, BigInt(RAM_BASE));
        if (h.pc < RAM_BASE || h.pc >= RAM_BASE + 0x20000) h.setPc(RAM_BASE + 0x10000 + (rnd() & 0xfffc));
      }
      expect(retired).toBeGreaterThan(0);
      expect(Number.isFinite(h.pc)).toBe(true);
    });
  }
});
