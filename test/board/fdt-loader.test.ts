// The FDT writer's blob format (read back by dtc) and the ELF loader's segment handling.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FdtWriter } from '../../src/board/fdt.js';
import { isLinuxImage, loadElf, loadFlat } from '../../src/board/loader.js';
import { GuestRam } from '../../src/memory/ram.js';

const haveDtc = spawnSync('dtc', ['--version'], { stdio: 'ignore' }).status === 0;

describe('FdtWriter', () => {
  it('writes header, reservations, strings once, aligned properties', () => {
    const w = new FdtWriter();
    w.reserve(0x80000000, 0x200000);
    w.beginNode('');
    w.propCells('#address-cells', 2);
    w.beginNode('node@1');
    w.propStrings('compatible', 'a,b', 'c');
    w.propEmpty('flag');
    w.prop('bytes', new Uint8Array([1, 2, 3]));
    w.propCells('#address-cells', 1); // same name again: one string in the strings block
    w.endNode();
    w.endNode();
    const dtb = w.finish();
    const dv = new DataView(dtb.buffer);
    expect(dv.getUint32(0)).toBe(0xd00dfeed);
    expect(dv.getUint32(4)).toBe(dtb.length);
    expect(dv.getUint32(20)).toBe(17);
    expect(dv.getUint32(24)).toBe(16);
    const strings = Buffer.from(dtb.subarray(dv.getUint32(12), dv.getUint32(12) + dv.getUint32(32))).toString('latin1');
    expect(strings.split('\0').filter(Boolean).sort()).toEqual(['#address-cells', 'bytes', 'compatible', 'flag']);
    expect(dv.getUint32(8) % 4).toBe(0);
    expect(dv.getUint32(36) % 4).toBe(0);
    if (haveDtc) {
      const f = join(mkdtempSync(join(tmpdir(), 'vmctl-fdt-')), 't.dtb');
      writeFileSync(f, dtb);
      const dts = execFileSync('dtc', ['-I', 'dtb', '-O', 'dts', f], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      expect(dts).toContain('/memreserve/\t0x0000000080000000 0x0000000000200000;');
      expect(dts).toContain('compatible = "a,b\\0c";');
      expect(dts).toContain('flag;');
      expect(dts).toContain('bytes = [01 02 03];');
    }
  });

  it('refuses unbalanced nodes', () => {
    const w = new FdtWriter();
    w.beginNode('');
    expect(() => w.finish()).toThrow(/left open/);
    expect(() => new FdtWriter().endNode()).toThrow();
  });
});

describe('loaders', () => {
  it('ELF: PT_LOAD at physical addresses, bss zeroed, entry and tohost found', () => {
    const elf = new Uint8Array(readFileSync(fileURLToPath(new URL('../../fixtures/firmware-tests/htif-hello.elf', import.meta.url))));
    const ram = new GuestRam(0x80000000, 2 << 20);
    ram.write(0x80001000, new Uint8Array(16).fill(0xaa)); // where tohost lives: must be cleared
    const img = loadElf(ram, 'htif-hello.elf', elf);
    expect(img.entry).toBe(0x80000000);
    expect(img.tohost).toBe(0x80001000);
    expect(img.fromhost).toBe(0x80001040);
    expect(ram.readU32(0x80001000)).toBe(0);
    expect(ram.readU32(0x80000000)).not.toBe(0);
  });

  it('ELF: rejects other machines and classes', () => {
    const ram = new GuestRam(0x80000000, 2 << 20);
    const x86 = new Uint8Array(readFileSync('/bin/true'));
    expect(() => loadElf(ram, '/bin/true', x86)).toThrow(/not a RISC-V ELF/);
  });

  it('Linux Image: recognised by its header, image_size reserved', () => {
    const img = new Uint8Array(0x1000);
    const dv = new DataView(img.buffer);
    dv.setUint32(0x10, 0x300000, true);      // image_size
    img.set([0x52, 0x53, 0x43, 0x05], 0x38);  // "RSC\x05"
    expect(isLinuxImage(img)).toBe(true);
    const ram = new GuestRam(0x80000000, 8 << 20);
    const r = loadFlat(ram, 'Image', img, 0x80200000);
    expect(r).toMatchObject({ kind: 'image', start: 0x80200000, end: 0x80500000, entry: 0x80200000 });
    const raw = loadFlat(ram, 'raw', new Uint8Array(10), 0x80000000);
    expect(raw).toMatchObject({ kind: 'raw', end: 0x8000000a });
  });
});
