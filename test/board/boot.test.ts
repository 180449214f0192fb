// Boot plumbing compared with QEMU 7.2: the reset-vector ROM (including the fw_dynamic_info
// block and the device-tree address) read back from QEMU's monitor, the initrd placement and
// /chosen from QEMU's dumped device tree, and HTIF against `-machine spike`.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VirtMachine } from '../../src/board/virt.js';
import type { MachineConfig } from '../../src/board/machine-types.js';
import { runGuest } from '../helpers/run-guest.js';

const QEMU_CPU = 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false';
const FW_DYNAMIC = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin';
const PAYLOAD = fileURLToPath(new URL('../../fixtures/firmware-tests/sbi-payload.bin', import.meta.url));
const HTIF = fileURLToPath(new URL('../../fixtures/firmware-tests/htif-hello.elf', import.meta.url));
const LINUX = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out');
const have = (cmd: string) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const haveQemu = have('qemu-system-riscv64');
const haveDtc = have('dtc');
const GiB = 1024 ** 3;

const host = { consoleOutput() {}, powerEvent() {}, log() {} };
const config = (c: Partial<MachineConfig>): MachineConfig =>
  ({ memoryBytes: 256 << 20, cpus: 1, firmware: { kind: 'none' }, cmdline: '', disks: [], ...c });

/** The first `words` 32-bit words of QEMU's ROM at 0x1000, through `xp` in its monitor. */
function qemuRom(args: string[], words: number): number[] {
  const r = spawnSync('qemu-system-riscv64', ['-machine', 'virt', '-cpu', QEMU_CPU, ...args,
    '-display', 'none', '-serial', 'null', '-monitor', 'stdio', '-S'],
  { input: `xp /${words}wx 0x1000\nquit\n`, encoding: 'latin1', timeout: 30_000 });
  const vals: number[] = [];
  for (const m of r.stdout.matchAll(/^[0-9a-f]{16}:((?: 0x[0-9a-f]{8})+)/gm)) {
    for (const v of m[1].trim().split(' ')) vals.push(parseInt(v, 16));
  }
  return vals;
}

function ourRom(vm: VirtMachine, words: number): number[] {
  const rom = vm.mem.findDevice(0x1000)!;
  return Array.from({ length: words }, (_, i) => rom.device.read(0x1000 + 4 * i - rom.base, 4));
}

describe.skipIf(!haveQemu)('boot ROM equals QEMU reset vector', () => {
  const cases: { name: string; mem: string; bytes: number; fw: boolean }[] = [
    { name: 'fw_dynamic + kernel, 256 MiB', mem: '256M', bytes: 256 << 20, fw: true },
    { name: 'fw_dynamic + kernel, 4 GiB (device tree below 3 GiB)', mem: '4G', bytes: 4 * GiB, fw: true },
    { name: 'no firmware, ELF kernel', mem: '128M', bytes: 128 << 20, fw: false },
  ];
  for (const c of cases) {
    it.skipIf(c.fw && !existsSync(FW_DYNAMIC))(c.name, () => {
      const kernel = c.fw ? PAYLOAD : HTIF;
      const vm = VirtMachine.create(config({ memoryBytes: c.bytes, kernelPath: kernel,
        firmware: c.fw ? { kind: 'file', path: FW_DYNAMIC } : { kind: 'none' } }), host);
      const ours = ourRom(vm, 22);
      const theirs = qemuRom(['-m', c.mem, '-bios', c.fw ? FW_DYNAMIC : 'none', '-kernel', kernel], 22);
      expect(theirs.length).toBe(22);
      expect(ours.map((w) => w.toString(16))).toEqual(theirs.map((w) => w.toString(16)));
      vm.close();
    });
  }
});

describe.skipIf(!haveQemu || !haveDtc || !existsSync(join(LINUX, 'Image')))('initrd placement and /chosen equal QEMU', () => {
  for (const [mem, bytes] of [['128M', 128 << 20], ['512M', 512 << 20]] as const) {
    it(`Image + initramfs, ${mem}`, () => {
      const dir = mkdtempSync(join(tmpdir(), 'vmctl-chosen-'));
      const cmdline = 'console=ttyS0 quiet';
      const image = join(LINUX, 'Image'), initrd = join(LINUX, 'initramfs.cpio.gz');
      const vm = VirtMachine.create(config({ memoryBytes: bytes, kernelPath: image, initrdPath: initrd, cmdline,
        firmware: { kind: 'file', path: FW_DYNAMIC } }), host);
      writeFileSync(join(dir, 'ours.dtb'), vm.dtb());
      vm.close();
      const q = spawnSync('qemu-system-riscv64', ['-machine', `virt,dumpdtb=${join(dir, 'qemu.dtb')}`, '-cpu', QEMU_CPU, '-m', mem,
        '-nographic', '-bios', FW_DYNAMIC, '-kernel', image, '-initrd', initrd, '-append', cmdline]);
      expect(q.status).toBe(0);
      const chosen = (f: string) => {
        const dts = execFileSync('dtc', ['-I', 'dtb', '-O', 'dts', join(dir, f)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
        // The seed is random on both sides, per boot: its place and size must match, not its value.
        return /\tchosen \{\n[^}]*\};/.exec(dts)![0].replace(/rng-seed = <(0x[0-9a-f]+ ){7}0x[0-9a-f]+>;/, 'rng-seed = <32 random bytes>;');
      };
      expect(chosen('ours.dtb')).toContain('rng-seed = <32 random bytes>;');
      expect(chosen('ours.dtb')).toBe(chosen('qemu.dtb'));
      expect(chosen('ours.dtb')).toContain('linux,initrd-start');
    });
  }
});

describe('HTIF (tohost) for ELF guests', () => {
  it('prints through device 1 and exits with the guest code', async () => {
    const r = await runGuest({ kernelPath: HTIF }, { timeoutMs: 10_000 });
    expect(r.output).toBe('hello through HTIF\n');
    expect(r.power).toEqual({ kind: 'poweroff', code: 3, source: 'htif', failed: true });
  });

  it('serves the proxied write syscall (riscv-pk convention; QEMU does not offer it)', async () => {
    const elf = fileURLToPath(new URL('../../fixtures/firmware-tests/htif-syscall.elf', import.meta.url));
    const r = await runGuest({ kernelPath: elf }, { timeoutMs: 10_000 });
    expect(r.output).toBe("written by the host's write syscall\n");
    expect(r.power).toEqual({ kind: 'poweroff', code: 0, source: 'htif', failed: false });
  });

  it.skipIf(!haveQemu)('behaves as on QEMU -machine spike', () => {
    const q = spawnSync('qemu-system-riscv64', ['-machine', 'spike', '-m', '128M', '-nographic', '-bios', 'none', '-kernel', HTIF],
      { encoding: 'latin1', timeout: 30_000 });
    expect(q.stdout).toBe('hello through HTIF\n');
    expect(q.status).toBe(3);
  });
});

describe('load errors say what is wrong and with which file', () => {
  it('missing kernel file', () => {
    expect(() => VirtMachine.create(config({ kernelPath: '/nonexistent/Image' }), host)).toThrow(/\/nonexistent\/Image: the kernel does not exist/);
  });
  it('an ELF linked outside RAM', () => {
    // the HTIF guest is linked at 0x80000000: 4 MiB of RAM is fine, but not below DRAM base
    expect(() => VirtMachine.create(config({ memoryBytes: 4 << 20, kernelPath: HTIF }), host)).not.toThrow();
  });
  it('a kernel larger than RAM', () => {
    const big = join(mkdtempSync(join(tmpdir(), 'vmctl-big-')), 'big.bin');
    writeFileSync(big, new Uint8Array(3 << 20));
    expect(() => VirtMachine.create(config({ memoryBytes: 2 << 20, kernelPath: big }), host)).toThrow(/big\.bin: .*(RAM|memory)/);
  });
  it('builtin firmware without a kernel', () => {
    expect(() => VirtMachine.create(config({ firmware: { kind: 'builtin' } }), host)).toThrow(/needs a kernel/);
  });
  it('more harts than the board has', () => {
    expect(() => VirtMachine.create(config({ cpus: 9, kernelPath: HTIF }), host)).toThrow(/cpus must be 1\.\.8/);
  });
});
