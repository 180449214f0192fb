// Real firmware nobody here wrote, booted end to end on the virt board:
//  - Debian's OpenSBI fw_jump.bin / fw_dynamic.bin print their banner (platform, harts, devices)
//    and hand over to an S-mode payload at 0x80200000 (fixtures/firmware-tests/sbi-payload.S),
//    which prints through SBI and shuts down through SBI SRST. The whole console output is
//    compared with QEMU 7.2's for the same machine.
//  - vmctl's builtin SBI runs the same payload.
//  - Debian's U-Boot (qemu-riscv64_smode) under OpenSBI (and under the builtin SBI) reaches its
//    prompt, answers `version` and powers off with `poweroff`.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runGuest } from '../helpers/run-guest.js';

const OPENSBI = '/usr/lib/riscv64-linux-gnu/opensbi/generic';
const UBOOT = '/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin';
const PAYLOAD = fileURLToPath(new URL('../../fixtures/firmware-tests/sbi-payload.bin', import.meta.url));
const haveOpenSbi = existsSync(`${OPENSBI}/fw_jump.bin`) && existsSync(`${OPENSBI}/fw_dynamic.bin`);
const haveQemu = spawnSync('qemu-system-riscv64', ['--version'], { stdio: 'ignore' }).status === 0;
const haveUboot = existsSync(UBOOT);
const MEM = 128 << 20;

function qemu(fw: string, kernel: string, cpus: number): string {
  const r = spawnSync('qemu-system-riscv64', ['-machine', 'virt', '-cpu', 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false',
    '-m', '128M', '-smp', String(cpus), '-nographic', '-bios', fw, '-kernel', kernel],
  { encoding: 'latin1', timeout: 60_000, stdio: ['ignore', 'pipe', 'inherit'] });
  expect(r.status).toBe(0);
  return r.stdout;
}

/** Lines that legitimately differ from QEMU: which hart wins fw_jump's boot-hart lottery
 *  (a host-thread race on QEMU), and the HPM counters QEMU has and we do not (no pmu node). */
function normalize(s: string): string {
  return s.split('\r\n').filter((l) => !/^(Domain0 Boot HART|Boot HART ID|Boot HART MHPM Count)\s*:/.test(l))
    .map((l) => l.replace(/^payload: hart \d/, 'payload: hart N')).join('\r\n');
}

/** The guests print CR LF; match on LF. */
const lf = (s: string) => s.replace(/\r\n/g, '\n');

describe.skipIf(!haveOpenSbi)('OpenSBI (Debian opensbi package)', () => {
  for (const fw of ['fw_jump', 'fw_dynamic']) {
    for (const cpus of [1, 4]) {
      it(`${fw}.bin prints its banner and starts the payload, ${cpus} hart(s)`, async () => {
        const r = await runGuest({ firmware: { kind: 'file', path: `${OPENSBI}/${fw}.bin` }, kernelPath: PAYLOAD, cpus, memoryBytes: MEM },
          { timeoutMs: 60_000 });
        expect(r.timedOut).toBe(false);
        const out = lf(r.output);
        expect(out).toContain('OpenSBI v1.');
        expect(out).toMatch(/Platform Name\s+: riscv-virtio,qemu\n/);
        expect(out).toMatch(new RegExp(`Platform HART Count\\s+: ${cpus}\\n`));
        expect(out).toMatch(/Platform Console Device\s+: uart8250\n/);
        expect(out).toMatch(/Platform Timer Device\s+: aclint-mtimer @ 10000000Hz\n/);
        expect(out).toMatch(/Platform Shutdown Device\s+: sifive_test\n/);
        expect(out).toMatch(/Domain0 Next Address\s+: 0x0000000080200000\n/);
        expect(out).toMatch(/payload: hart \d in S-mode, dtb magic ok, sbi spec 0x01000000\n/);
        // OpenSBI shuts down through the test finisher (its SRST backend on virt)
        expect(r.power).toEqual({ kind: 'poweroff', code: 0, source: 'test-finisher', failed: false });
        if (fw === 'fw_dynamic') expect(out).toContain('payload: hart 0 in S-mode'); // fw_dynamic_info.boot_hart = 0
      });

      it.skipIf(!haveQemu)(`${fw}.bin console output equals QEMU's, ${cpus} hart(s)`, async () => {
        const r = await runGuest({ firmware: { kind: 'file', path: `${OPENSBI}/${fw}.bin` }, kernelPath: PAYLOAD, cpus, memoryBytes: MEM },
          { timeoutMs: 60_000 });
        expect(normalize(r.output)).toBe(normalize(qemu(`${OPENSBI}/${fw}.bin`, PAYLOAD, cpus)));
      });
    }

    it.skipIf(!haveQemu)(`${fw}.bin console output equals QEMU's, 4 harts on threads`, async () => {
      const r = await runGuest({ firmware: { kind: 'file', path: `${OPENSBI}/${fw}.bin` }, kernelPath: PAYLOAD, cpus: 4, memoryBytes: MEM },
        { timeoutMs: 60_000, threads: true });
      expect(normalize(r.output)).toBe(normalize(qemu(`${OPENSBI}/${fw}.bin`, PAYLOAD, 4)));
    }, 90_000);
  }
});

describe('builtin SBI', () => {
  it('starts the payload in S-mode at 0x80200000 and powers off through SRST', async () => {
    const r = await runGuest({ firmware: { kind: 'builtin' }, kernelPath: PAYLOAD, cpus: 2, memoryBytes: MEM }, { timeoutMs: 30_000 });
    expect(r.output).toBe('payload: hart 0 in S-mode, dtb magic ok, sbi spec 0x01000000\r\n'); // LF as CR LF, like OpenSBI
    expect(r.power).toEqual({ kind: 'poweroff', code: 0, source: 'sbi', failed: false });
  });
});

describe.skipIf(!haveUboot)('U-Boot (Debian u-boot-qemu, qemu-riscv64_smode) under OpenSBI and the builtin SBI', () => {
  for (const fw of ['fw_jump', 'fw_dynamic', 'builtin']) {
    it.skipIf(fw !== 'builtin' && !haveOpenSbi)(`reaches the prompt and answers version (${fw})`, async () => {
      const firmware = fw === 'builtin' ? { kind: 'builtin' as const } : { kind: 'file' as const, path: `${OPENSBI}/${fw}.bin` };
      const r = await runGuest({ firmware, kernelPath: UBOOT, cpus: fw === 'builtin' ? 2 : 1, memoryBytes: MEM }, {
        timeoutMs: 90_000,
        script: [
          { when: 'Hit any key to stop autoboot', send: ' ' },
          { when: '=> ', send: 'version\n' },
          { when: /GNU ld[^\n]*\n=> /, send: 'poweroff\n' },
        ],
      });
      expect(r.timedOut).toBe(false);
      const out = lf(r.output);
      expect(out).toMatch(/U-Boot 20\d\d\.\d\d/);
      expect(out).toMatch(/=> version\nU-Boot 20\d\d\.\d\d[^\n]*\n\nriscv64-linux-gnu-gcc/);
      expect(r.power).toEqual({ kind: 'poweroff', code: 0, source: 'test-finisher', failed: false });
    });
  }
});
