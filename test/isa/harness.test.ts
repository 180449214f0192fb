// Checks of the differential harness itself: QEMU is present and configured as the machine
// vmctl emulates, spec corrections apply only where listed and fail when stale, and a
// difference in output is reported with its line.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { QEMU_BINARY, QEMU_CPU, requireQemu } from '../helpers/qemu.js';
import { applyDifferences, firstDifference } from './differential.js';

describe('ISA differential harness', () => {
  it('finds QEMU 7.2 or newer (fails loudly when it is missing)', () => {
    const version = requireQemu();
    const [major, minor] = version.split('.').map(Number);
    expect(major * 100 + minor).toBeGreaterThanOrEqual(702);
  });

  it('gives QEMU the extension set of vmctl: rv64imafdc_zicsr_zifencei_zihintpause_sstc', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmctl-qemu-dtb-'));
    try {
      const dtb = join(dir, 'virt.dtb');
      const r = spawnSync(QEMU_BINARY, ['-machine', `virt,dumpdtb=${dtb}`, '-cpu', QEMU_CPU, '-bios', 'none', '-nographic', '-monitor', 'none'],
        { encoding: 'utf8', timeout: 20_000 });
      expect(r.status, r.stderr).toBe(0);
      const text = readFileSync(dtb).toString('latin1');
      const isa = /rv64[a-z0-9_]+/.exec(text)?.[0];
      expect(isa).toBe('rv64imafdc_zicsr_zifencei_zihintpause_sstc');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('replaces listed QEMU lines by the spec lines, with regex groups', () => {
    const out = 'a\nsc.d +1: no trap\nsc.w +2: no trap\nb\n';
    const fixed = applyDifferences(out, [{ qemu: /(sc\.[wd]) \+(\d): no trap/, spec: '$1 +$2: trap', why: 'test' }]);
    expect(fixed).toBe('a\nsc.d +1: trap\nsc.w +2: trap\nb\n');
    expect(applyDifferences('x\ny\n', [{ qemu: 'y', spec: 'z', why: 'test' }])).toBe('x\nz\n');
    // Lines only QEMU prints are dropped; one line may stand for several.
    expect(applyDifferences('a\nb\nc\n', [{ qemu: 'b', spec: null, why: 'test' }])).toBe('a\nc\n');
    expect(applyDifferences('a\nb\n', [{ qemu: 'b', spec: 'b\nb2', why: 'test' }])).toBe('a\nb\nb2\n');
  });

  it('rejects a listed difference that QEMU no longer shows', () => {
    expect(() => applyDifferences('x\n', [{ qemu: 'gone', spec: 'z', why: 'test' }])).toThrow(/no longer seen/);
    // Whole lines only: a substring is not a match.
    expect(() => applyDifferences('prefix gone\n', [{ qemu: /gone/, spec: 'z', why: 'test' }])).toThrow(/no longer seen/);
  });

  it('reports the first differing line', () => {
    expect(firstDifference('a\nb\n', 'a\nb\n')).toBeNull();
    expect(firstDifference('a\nb\nc\n', 'a\nX\nc\n')).toMatch(/first difference at line 2[\s\S]*2: b[\s\S]*2: X/);
  });
});
