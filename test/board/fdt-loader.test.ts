// The FDT writer's blob format (read back by dtc) and the ELF loader's segment handling.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FdtWriter } from '../../src/board/fdt.js';
import { bytesImage, isLinuxImage, loadElf, loadFlat, loadImage, LoadError, RamExtent, type LoadTarget } from '../../src/board/loader.js';
import { withRegular } from '../../src/host/regular-file.js';
import { CHUNK_SIZE, GuestRam } from '../../src/memory/ram.js';

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
    const r = loadFlat(ram, bytesImage('Image', img), 0x80200000);
    expect(r).toMatchObject({ kind: 'image', start: 0x80200000, end: 0x80500000, entry: 0x80200000 });
    const raw = loadFlat(ram, bytesImage('raw', new Uint8Array(10)), 0x80000000);
    expect(raw).toMatchObject({ kind: 'raw', end: 0x8000000a });
  });

  // A kernel goes from its file straight into the chunks it lands in (no copy of the whole file in
  // between); checking a definition places it in the RAM's extent only, with the same results.
  it('a file is read straight into RAM across chunks; the extent-only target places it alike', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmctl-loader-'));
    const bytes = new Uint8Array(CHUNK_SIZE + 5000).map((_, i) => (i * 7 + (i >> 12)) & 0xff);
    bytes.set([0x52, 0x53, 0x43, 0x05], 0x38);                    // a Linux Image header...
    new DataView(bytes.buffer).setBigUint64(0x10, BigInt(3 * CHUNK_SIZE), true); // ...reserving 3 chunks
    const path = join(dir, 'Image');
    writeFileSync(path, bytes);
    const at = 0x80000000 + CHUNK_SIZE - 1000;                     // straddles chunks 0, 1, 2
    const load = (t: LoadTarget) => withRegular(path, { maxBytes: 64 << 20 }, (f) => loadImage(t, f, at));
    const ram = new GuestRam(0x80000000, 8 << 20);
    const img = load(ram);
    expect(img).toMatchObject({ kind: 'image', start: at, end: at + 3 * CHUNK_SIZE, entry: at });
    const back = new Uint8Array(bytes.length);
    ram.read(at, back);
    expect(Buffer.from(back).equals(Buffer.from(bytes))).toBe(true);
    expect([0, 1, 2, 3].map((i) => ram.isAllocated(i))).toEqual([true, true, true, false]);
    expect(load(new RamExtent(0x80000000, 8 << 20))).toEqual(img);
    // Too little RAM: the same refusal from both targets.
    const small = (t: LoadTarget) => () => withRegular(path, { maxBytes: 64 << 20 }, (f) => loadImage(t, f, 0x80000000 + (3 << 20)));
    expect(small(new GuestRam(0x80000000, 4 << 20))).toThrow(LoadError);
    expect(small(new RamExtent(0x80000000, 4 << 20))).toThrow(/does not fit in RAM 0x80000000..0x80400000/);
  });

  it('an ELF is placed in the extent as in RAM', () => {
    const elf = new Uint8Array(readFileSync(fileURLToPath(new URL('../../fixtures/firmware-tests/htif-hello.elf', import.meta.url))));
    const inRam = loadImage(new GuestRam(0x80000000, 2 << 20), bytesImage('htif-hello.elf', elf), 0x80000000);
    expect(loadImage(new RamExtent(0x80000000, 2 << 20), bytesImage('htif-hello.elf', elf), 0x80000000)).toEqual(inRam);
  });
});
