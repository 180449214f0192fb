// Integer arithmetic on the hart: every RV64IM register-register and immediate operation is run
// by a real guest program on corner-case operands, and the results the guest stores are compared
// with a BigInt model written from the ISA spec (RV64I chapter, M extension: division by zero
// and overflow semantics, MULH* high halves, W-suffixed ops sign-extending 32-bit results).
import { describe, expect, test } from 'vitest';
import { runAsm, RAM_BASE } from './harness.js';

const M64 = (1n << 64n) - 1n;
const u = (v: bigint): bigint => BigInt.asUintN(64, v);
const s = (v: bigint): bigint => BigInt.asIntN(64, v);
const sx32 = (v: bigint): bigint => u(BigInt.asIntN(32, v));

const rr: Record<string, (a: bigint, b: bigint) => bigint> = {
  add: (a, b) => u(a + b),
  sub: (a, b) => u(a - b),
  sll: (a, b) => u(a << (b & 63n)),
  srl: (a, b) => a >> (b & 63n),
  sra: (a, b) => u(s(a) >> (b & 63n)),
  slt: (a, b) => (s(a) < s(b) ? 1n : 0n),
  sltu: (a, b) => (a < b ? 1n : 0n),
  xor: (a, b) => a ^ b,
  or: (a, b) => a | b,
  and: (a, b) => a & b,
  mul: (a, b) => u(a * b),
  mulh: (a, b) => u((s(a) * s(b)) >> 64n),
  mulhsu: (a, b) => u((s(a) * b) >> 64n),
  mulhu: (a, b) => (a * b) >> 64n,
  div: (a, b) => (b === 0n ? M64 : (s(a) === -(1n << 63n) && s(b) === -1n) ? a : u(s(a) / s(b))),
  divu: (a, b) => (b === 0n ? M64 : a / b),
  rem: (a, b) => (b === 0n ? a : (s(a) === -(1n << 63n) && s(b) === -1n) ? 0n : u(s(a) % s(b))),
  remu: (a, b) => (b === 0n ? a : a % b),
  addw: (a, b) => sx32(a + b),
  subw: (a, b) => sx32(a - b),
  sllw: (a, b) => sx32(a << (b & 31n)),
  srlw: (a, b) => sx32((a & 0xffffffffn) >> (b & 31n)),
  sraw: (a, b) => sx32(BigInt.asIntN(32, a) >> (b & 31n)),
  mulw: (a, b) => sx32(a * b),
  divw: (a, b) => {
    const x = BigInt.asIntN(32, a), y = BigInt.asIntN(32, b);
    if (y === 0n) return M64;
    if (x === -(1n << 31n) && y === -1n) return sx32(x);
    return sx32(x / y);
  },
  divuw: (a, b) => {
    const x = a & 0xffffffffn, y = b & 0xffffffffn;
    return y === 0n ? M64 : sx32(x / y);
  },
  remw: (a, b) => {
    const x = BigInt.asIntN(32, a), y = BigInt.asIntN(32, b);
    if (y === 0n) return sx32(x);
    if (x === -(1n << 31n) && y === -1n) return 0n;
    return sx32(x % y);
  },
  remuw: (a, b) => {
    const x = a & 0xffffffffn, y = b & 0xffffffffn;
    return y === 0n ? sx32(x) : sx32(x % y);
  },
};

const corner = [
  0n, 1n, 2n, 3n, 7n, 0x7fn, 0x80n, 0xffn, 0x7fffn, 0xffffn, 0x7fffffffn, 0x80000000n, 0xffffffffn,
  0x100000000n, 0x123456789abcdefn, 0x7fffffffffffffffn, 0x8000000000000000n, 0x8000000000000001n,
  0xfffffffffffffffen, M64, 0xfedcba9876543210n, 0x00000000deadbeefn, 0xffffffff80000000n, 0x1fffffffffffffn,
  0x20000000000000n, 0xfff0000000000000n,
];

function rand64(seed: { v: bigint }): bigint {
  let x = seed.v;
  x ^= (x << 13n) & M64; x ^= x >> 7n; x ^= (x << 17n) & M64;
  seed.v = x;
  return x;
}

function operandPairs(): [bigint, bigint][] {
  const pairs: [bigint, bigint][] = [];
  for (const a of corner) for (const b of corner) pairs.push([a, b]);
  const seed = { v: 0x9e3779b97f4a7c15n };
  for (let i = 0; i < 200; i++) {
    const a = rand64(seed), b = rand64(seed);
    pairs.push([a, b], [a >> 20n, b >> 40n], [a, b & 63n], [a >> 33n, b >> 33n], [a, b & 0xffffffffn], [a, b & 0xfffffn],
      [a, u(-(b & 0xffffffffn))], [a, u(-(b & 0x1fffffn))]);
  }
  return pairs;
}

const RESULTS = RAM_BASE + 0x100000;

/** Runs `op` on every pair in a guest; returns what the guest stored. */
function runOp(op: string, pairs: [bigint, bigint][]): bigint[] {
  const body: string[] = [];
  pairs.forEach(([a, b], i) => {
    body.push(`  li a0, ${a}`, `  li a1, ${b}`, `  ${op} a2, a0, a1`, `  sd a2, ${(i % 256) * 8}(s0)`);
    if (i % 256 === 255) body.push('  addi s0, s0, 2040', '  addi s0, s0, 8');
  });
  const src = `
  .globl _start
_start:
  li s0, ${RESULTS}
${body.join('\n')}
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
1: j 1b
`;
  const m = runAsm(src, { max: 50_000_000 });
  expect(m.exit).toEqual({ code: 0 });
  const out: bigint[] = [];
  const bytes = new Uint8Array(8);
  for (let i = 0; i < pairs.length; i++) {
    m.mem.ram.read(RESULTS + i * 8, bytes);
    out.push(new DataView(bytes.buffer).getBigUint64(0, true));
  }
  return out;
}

describe('RV64IM register-register operations match the ISA spec model', () => {
  const pairs = operandPairs();
  for (const op of Object.keys(rr)) {
    test(op, () => {
      const got = runOp(op, pairs);
      const bad: string[] = [];
      pairs.forEach(([a, b], i) => {
        const want = rr[op](a, b);
        if (got[i] !== want) bad.push(`${op} 0x${a.toString(16)}, 0x${b.toString(16)}: got 0x${got[i].toString(16)} want 0x${want.toString(16)}`);
      });
      expect(bad.slice(0, 5)).toEqual([]);
    });
  }
});

describe('immediate forms', () => {
  const imms = [0, 1, -1, 2047, -2048, 31, 63, 5];
  const vals = [0n, 1n, M64, 0x8000000000000000n, 0x7fffffffffffffffn, 0xfedcba9876543210n, 0x80000000n, 0x7fffffffn];
  const model: Record<string, (a: bigint, i: number) => bigint | null> = {
    addi: (a, i) => u(a + BigInt(i)),
    slti: (a, i) => (s(a) < BigInt(i) ? 1n : 0n),
    sltiu: (a, i) => (a < u(BigInt(i)) ? 1n : 0n),
    xori: (a, i) => a ^ u(BigInt(i)),
    ori: (a, i) => a | u(BigInt(i)),
    andi: (a, i) => a & u(BigInt(i)),
    slli: (a, i) => (i < 0 || i > 63 ? null : u(a << BigInt(i))),
    srli: (a, i) => (i < 0 || i > 63 ? null : a >> BigInt(i)),
    srai: (a, i) => (i < 0 || i > 63 ? null : u(s(a) >> BigInt(i))),
    addiw: (a, i) => sx32(a + BigInt(i)),
    slliw: (a, i) => (i < 0 || i > 31 ? null : sx32(a << BigInt(i))),
    srliw: (a, i) => (i < 0 || i > 31 ? null : sx32((a & 0xffffffffn) >> BigInt(i))),
    sraiw: (a, i) => (i < 0 || i > 31 ? null : sx32(BigInt.asIntN(32, a) >> BigInt(i))),
  };
  for (const op of Object.keys(model)) {
    test(op, () => {
      const cases: [bigint, number][] = [];
      for (const a of vals) for (const i of imms) if (model[op](a, i) !== null) cases.push([a, i]);
      const body = cases.map(([a, i], k) => `  li a0, ${a}\n  ${op} a2, a0, ${i}\n  sd a2, ${k * 8}(s0)`).join('\n');
      const m = runAsm(`.globl _start\n_start:\n  li s0, ${RESULTS}\n${body}\n  li t0, 0x100000\n  li t1, 0x5555\n  sw t1, 0(t0)\n1: j 1b\n`);
      expect(m.exit).toEqual({ code: 0 });
      const bytes = new Uint8Array(8);
      cases.forEach(([a, i], k) => {
        m.mem.ram.read(RESULTS + k * 8, bytes);
        expect(`${op} ${a} ${i} = ${new DataView(bytes.buffer).getBigUint64(0, true)}`).toBe(`${op} ${a} ${i} = ${model[op](a, i)}`);
      });
    });
  }
});
