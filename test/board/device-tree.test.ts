// Our generated device tree against QEMU 7.2's for the same machine, both decompiled by dtc.
// QEMU's is dumped with `-machine virt,dumpdtb=...`; the nodes we deliberately do not have
// (pmu, fw-cfg, flash, platform-bus, pci) are removed from its text, the value of rng-seed (random
// in both, per boot) is masked in both, and
// the two properties where we tell the truth about our hart (mmu-type sv39, riscv,isa without
// zihintpause) are adjusted; everything else must be identical, phandles included.
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDeviceTree } from '../../src/board/device-tree.js';
import { RISCV_ISA } from '../../src/board/memory-map.js';

const have = (cmd: string) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const haveTools = have('qemu-system-riscv64') && have('dtc');
const QEMU_CPU = 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false';

function dtc(file: string): string {
  return execFileSync('dtc', ['-I', 'dtb', '-O', 'dts', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

/** Removes `name {...};` blocks (and single property lines) from dtc's output. */
function dropNodes(dts: string, nodeName: RegExp, propName: RegExp): string {
  const lines = dts.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\t*)([^\s]+) \{$/.exec(lines[i]);
    if (m && nodeName.test(m[2])) {
      const end = `${m[1]}};`;
      while (lines[i] !== end) i++;
      if (lines[i + 1] === '') i++; // the blank line dtc puts between sibling nodes
      continue;
    }
    const p = /^\t*([^\s]+) = /.exec(lines[i]);
    if (p && propName.test(p[1])) continue;
    out.push(lines[i]);
  }
  return out.join('\n');
}

describe.skipIf(!haveTools)('device tree matches QEMU virt', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmctl-dt-'));
  const cases = [
    { cpus: 1, mem: '256M', bytes: 256 * 1024 * 1024, append: undefined as string | undefined },
    { cpus: 4, mem: '1G', bytes: 1024 * 1024 * 1024, append: 'console=ttyS0 earlycon=sbi' },
    { cpus: 8, mem: '6G', bytes: 6 * 1024 * 1024 * 1024, append: undefined },
  ];
  for (const c of cases) {
    it(`cpus ${c.cpus}, memory ${c.mem}${c.append ? ', bootargs' : ''}`, () => {
      const qemuDtb = join(dir, `qemu-${c.cpus}.dtb`);
      const args = ['-machine', `virt,dumpdtb=${qemuDtb}`, '-cpu', QEMU_CPU, '-smp', String(c.cpus), '-m', c.mem,
        '-nographic', '-bios', 'none'];
      // QEMU only writes bootargs for -append when it loads a kernel; any file will do for that.
      if (c.append) args.push('-kernel', '/bin/true', '-append', c.append);
      const r = spawnSync('qemu-system-riscv64', args, { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      let want = dtc(qemuDtb);
      want = dropNodes(want, /^(pmu|fw-cfg@.*|flash@.*|platform-bus@.*|pci@.*)$/, /(?!)/);
      // Both carry a random seed: its place and size must match, its value cannot.
      const maskSeed = (dts: string) => dts.replace(/rng-seed = <(0x[0-9a-f]+ ){7}0x[0-9a-f]+>;/, 'rng-seed = <32 random bytes>;');
      want = maskSeed(want);
      want = want.replaceAll('mmu-type = "riscv,sv48"', 'mmu-type = "riscv,sv39"');
      want = want.replace(/riscv,isa = "[^"]*"/g, `riscv,isa = "${RISCV_ISA}"`);
      const ours = join(dir, `ours-${c.cpus}.dtb`);
      writeFileSync(ours, buildDeviceTree({ cpus: c.cpus, memoryBytes: c.bytes, bootargs: c.append, rngSeed: new Uint8Array(randomBytes(32)) }));
      const got = maskSeed(dtc(ours));
      expect(want).toContain('rng-seed = <32 random bytes>;');
      expect(got).toBe(want);
      // and QEMU's ISA string really was the one we replaced (a QEMU that changed would show here)
      expect(dtc(qemuDtb)).toContain('riscv,isa = "rv64imafdc_zicsr_zifencei_zihintpause_sstc"');
      expect(readFileSync(ours).readUInt32BE(0)).toBe(0xd00dfeed);
    });
  }

  it('carries the initrd range as QEMU does', () => {
    const ours = join(dir, 'initrd.dtb');
    writeFileSync(ours, buildDeviceTree({ cpus: 1, memoryBytes: 128 << 20, initrd: { start: 0x84200000, end: 0x842f0000 }, rngSeed: new Uint8Array(32).fill(7) }));
    const got = dtc(ours);
    // In QEMU's order: the initrd range, then the seed (QEMU adds the initrd after creating /chosen).
    expect(got).toContain('linux,initrd-end = <0x842f0000>;\n\t\tlinux,initrd-start = <0x84200000>;\n\t\trng-seed = <0x7070707');
  });
});
