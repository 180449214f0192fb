// Issue 14's scenario with the Linux test guest, through the real CLI and daemon, on one VM (a
// Linux boot is costly): a shell writes a marker into tmpfs (RAM) and onto its ext2 disk and
// starts a background counter; `save`, a daemon restart and `start` carry all three on.
// `snapshot take`, change both markers, `snapshot restore`: both are back as they were and the
// counter goes on from the snapshot's value. The user-mode NAT: a guest TCP connection to the host
// is reset by a resume and by a restore (the guest sees it closed), and the definition's port
// forward works again.
// Finally a linked clone of the prepared (stopped) VM boots, sees the disk marker and changes its
// disk without touching any file of the source's.
// Skipped when the Linux guest has not been built on this machine.

import { createHash } from 'node:crypto';
import { copyFileSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findLinux, createLinuxVm, guestRun, startLinuxVm } from './linux-guest.js';
import { fetchText, until, VmctlHome } from './harness.js';

const LINUX = findLinux();
const h = new VmctlHome();
afterAll(() => h.cleanup());

let nat: Server;
const natConns: { socket: Socket; lines: number; closed: boolean }[] = [];

async function sh(script: string): Promise<string> {
  const r = await guestRun(h, 'lx', script);
  expect(r.status, `${script}: ${r.out}`).toBe(0);
  return r.out;
}

/** The host ports bound now for the VM's forwards, by guest port. */
async function forwards(): Promise<Map<number, number>> {
  const r = await h.run(['port', 'lx', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return new Map((JSON.parse(r.stdout) as { hostPort: number; guestPort: number }[]).map((f) => [f.guestPort, f.hostPort]));
}

/** The guest's page through the definition's forward (host port 0: whatever it is bound to now). */
async function page(): Promise<string> {
  return fetchText(`http://127.0.0.1:${(await forwards()).get(8080)}/p.txt`);
}

const counter = async (): Promise<number> => Number((await sh('cat /tmp/counter')).trim());

/** Every file of a VM's folder and of its disks' chains, with a hash of its contents. */
function hashTree(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && /\.(qcow2|img|vmstate)$/.test(e.name)) m.set(p, createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  walk(dir);
  return m;
}

describe.skipIf(!LINUX)('save, snapshots and a linked clone with the Linux guest', () => {
  beforeAll(async () => {
    copyFileSync(join(LINUX!, 'disk.img'), join(h.home, 'disk.img'));
    await createLinuxVm(h, LINUX!, 'lx', [
      'disks:', `  - path: ${join(h.home, 'disk.img')}`,
      'network:', '  - mode: user', '    forwards:', '      - { host: "0", guest: 8080 }',
    ]);
    await startLinuxVm(h, 'lx');
    nat = createServer((socket) => {
      const c = { socket, lines: 0, closed: false };
      natConns.push(c);
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => { c.lines += d.split('\n').length - 1; });
      socket.on('close', () => { c.closed = true; });
      socket.on('error', () => { /* reset: seen as closed */ });
    });
    await new Promise<void>((r) => nat.listen(0, '127.0.0.1', () => r()));
  }, 400_000);
  afterAll(() => { nat?.close(); for (const c of natConns) c.socket.destroy(); });

  it('prepares the guest: markers in tmpfs and on the disk, a counter, a web server, a NAT connection', async () => {
    const natPort = (nat.address() as { port: number }).port;
    await sh([
      'echo ram-1 > /tmp/marker',
      'mkdir -p /mnt/d && mount -t ext2 /dev/vda /mnt/d && echo disk-1 > /mnt/d/marker && sync',
      // The counter: a process that goes on only if the machine does (1 per guest second).
      '(i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 1; done) </dev/null >/dev/null 2>&1 &',
      'echo $! > /tmp/counter.pid',
      'mkdir -p /tmp/www && echo page-from-guest > /tmp/www/p.txt && httpd -p 8080 -h /tmp/www',
      // A connection through the NAT to the host, writing a line a second; its end is recorded.
      `((i=0; while :; do echo line$i; i=$((i+1)); sleep 1; done) | nc 10.0.2.2 ${natPort}; echo ended > /tmp/nc.done) </dev/null >/dev/null 2>&1 &`,
    ].join('\n'));
    await until(async () => natConns.length === 1 && natConns[0].lines >= 2, 60_000, 'the guest\'s NAT connection');
    // A second one on which the guest only waits for the host, sending nothing.
    // (The end is recorded next to nc, not after the pipeline, which waits for the sleep too.)
    await sh(`(sleep 100000 | (nc 10.0.2.2 ${natPort}; echo ended > /tmp/ncw.done)) </dev/null >/dev/null 2>&1 &`);
    await until(async () => natConns.length === 2, 60_000, 'the guest\'s waiting NAT connection');
    await until(async () => (await counter()) >= 3, 60_000, 'the counter');
    expect(await page()).toBe('page-from-guest\n');
  }, 200_000);

  it('save, daemon restart, start: the counter carries on, both markers are there, the NAT connection is reset, the forward is back', async () => {
    const pid = (await sh('cat /tmp/counter.pid')).trim();
    const before = await counter();
    const saved = await h.run(['save', 'lx']);
    expect(saved.code, saved.stderr).toBe(0);
    expect(saved.stdout).toMatch(/Saved VM lx \(.* in [\d.]+ s\), state saved/);
    // The worker is gone: the host end of the NAT connection is closed.
    await until(async () => natConns[0].closed && natConns[1].closed, 30_000, 'the host ends of the NAT connections closed');
    expect((await h.run(['daemon', 'stop'])).code).toBe(0);
    const start = await h.run(['start', 'lx']);
    expect(start.code, start.stderr).toBe(0);
    expect(start.stdout).toContain('Resumed VM lx');

    const after = await counter();
    // No reboot: the same process, its count going on from the saved value (not from 1).
    expect(after).toBeGreaterThanOrEqual(before);
    expect(after).toBeLessThan(before + 30);
    expect((await sh('cat /tmp/counter.pid')).trim()).toBe(pid);
    expect(await sh(`kill -0 ${pid} && echo alive`)).toBe('alive\n');
    await until(async () => (await counter()) > after, 60_000, 'the counter going on');
    expect(await sh('cat /tmp/marker; echo 3 > /proc/sys/vm/drop_caches; cat /mnt/d/marker')).toBe('ram-1\ndisk-1\n');
    // The guest's next write on its old connection is answered with a reset: nc ends.
    await until(async () => (await sh('cat /tmp/nc.done 2>/dev/null; true')) === 'ended\n', 60_000, 'the guest seeing its NAT connection closed');
    // The connection that only waits is reset too: the resumed NAT probes each connection the
    // guest had, and resets it on the guest's answer.
    await until(async () => (await sh('cat /tmp/ncw.done 2>/dev/null; true')) === 'ended\n', 30_000, 'the guest seeing its waiting NAT connection closed');
    expect(natConns).toHaveLength(2); // nothing reconnected behind the guest's back
    expect(await page()).toBe('page-from-guest\n');
  }, 300_000);

  it('snapshot take, change both markers, snapshot restore: both are back, the counter resumes from the snapshot', async () => {
    // A third NAT connection, open when the snapshot is taken: the restored guest finds it reset.
    const natPort = (nat.address() as { port: number }).port;
    await sh(`((i=0; while :; do echo line$i; i=$((i+1)); sleep 1; done) | nc 10.0.2.2 ${natPort}; echo ended > /tmp/nc2.done) </dev/null >/dev/null 2>&1 &`);
    await until(async () => natConns.length === 3 && natConns[2].lines >= 2, 60_000, 'the guest\'s third NAT connection');
    const take = await h.run(['snapshot', 'take', 'lx', 'prepared', '--description', 'markers 1']);
    expect(take.code, take.stderr).toBe(0);
    const atTake = await counter();
    await sh('echo ram-2 > /tmp/marker && echo disk-2 > /mnt/d/marker && sync && echo 2 > /tmp/www/p.txt');
    expect(await sh('cat /tmp/marker /mnt/d/marker')).toBe('ram-2\ndisk-2\n');
    // A forward added at run time is not in the snapshot's definition: the restore drops it.
    expect((await h.run(['port', 'add', 'lx', '0:8081'])).code).toBe(0);
    expect([...(await forwards()).keys()].sort()).toEqual([8080, 8081]);
    expect(await page()).toBe('2\n');
    await until(async () => (await counter()) >= atTake + 8, 120_000, 'the counter moving on past the snapshot');
    const beforeRestore = await counter();

    const list = JSON.parse((await h.run(['snapshot', 'list', 'lx', '--json'])).stdout) as { current: string; snapshots: { name: string; vmState: string; state: unknown }[] };
    expect(list.snapshots.map((s) => [s.name, s.vmState, s.state !== null])).toEqual([['prepared', 'running', true]]);

    const restore = await h.run(['snapshot', 'restore', 'lx', 'prepared', '--force']);
    expect(restore.code, restore.stderr).toBe(0);
    expect(JSON.parse((await h.run(['info', 'lx', '--json'])).stdout).state).toBe('running');
    const restored = await counter();
    expect(restored).toBeGreaterThanOrEqual(atTake);
    expect(restored).toBeLessThan(beforeRestore);
    // Read from the disk itself, not from the page cache the snapshot also brought back.
    expect(await sh('cat /tmp/marker; echo 3 > /proc/sys/vm/drop_caches; cat /mnt/d/marker')).toBe('ram-1\ndisk-1\n');
    expect(await sh('umount /mnt/d && mount -t ext2 /dev/vda /mnt/d && cat /mnt/d/marker')).toBe('disk-1\n');
    await until(async () => (await counter()) > restored, 60_000, 'the counter going on after the restore');
    expect(natConns[2].closed).toBe(true);
    await until(async () => (await sh('cat /tmp/nc2.done 2>/dev/null; true')) === 'ended\n', 60_000, 'the restored guest seeing its NAT connection closed');
    expect(natConns).toHaveLength(3);
    // The forwards are set up again from the snapshot's definition, to the guest's server as it was.
    expect([...(await forwards()).keys()]).toEqual([8080]);
    expect(await page()).toBe('page-from-guest\n');
  }, 300_000);

  it('a linked clone of the prepared VM boots, sees its disk and changes it without touching the source\'s files', async () => {
    await sh('umount /mnt/d && sync');
    const stop = await h.run(['stop', 'lx'], { timeoutMs: 120_000 });
    expect(stop.code, stop.stderr).toBe(0);
    const src = join(h.home, 'vms', 'lx');
    const clone = await h.run(['clone', 'lx', 'lc', '--linked']);
    expect(clone.code, clone.stderr).toBe(0);
    // The source's files as the clone starts: its layers (now shared) and the user's disk image.
    const files = hashTree(src);
    files.set(join(h.home, 'disk.img'), createHash('sha256').update(readFileSync(join(h.home, 'disk.img'))).digest('hex'));
    const sizes = [...files.keys()].map((f) => statSync(f).size);

    const cs = await h.run(['start', 'lc', '--wait-for', 'shell on console', '--timeout', '5m'], { timeoutMs: 330_000 });
    expect(cs.code, cs.stderr).toBe(0);
    const r = await guestRun(h, 'lc', 'dmesg -n 1; mkdir -p /mnt/d && mount -t ext2 /dev/vda /mnt/d && cat /mnt/d/marker && echo clone > /mnt/d/marker && dd if=/dev/urandom of=/mnt/d/blob bs=64k count=16 2>/dev/null && umount /mnt/d && sync && echo written');
    expect(r.out).toContain('disk-1\n');
    expect(r.out).toContain('written\n');
    expect((await h.run(['stop', 'lc'], { timeoutMs: 120_000 })).code).toBe(0);

    // The clone's own overlay took the writes; every file of the source is as it was.
    const after = hashTree(src);
    after.set(join(h.home, 'disk.img'), createHash('sha256').update(readFileSync(join(h.home, 'disk.img'))).digest('hex'));
    for (const [f, hash] of files) expect(after.get(f), f).toBe(hash);
    expect([...files.keys()].map((f) => statSync(f).size)).toEqual(sizes);
    const cloneLayers = hashTree(join(h.home, 'vms', 'lc'));
    expect(cloneLayers.size).toBeGreaterThan(0);
    expect(Math.max(...[...cloneLayers.keys()].map((f) => statSync(f).size))).toBeGreaterThan(1 << 20);

    // The clone's disk, as the clone's next boot reads it: its own marker.
    const again = await h.run(['start', 'lc', '--wait-for', 'shell on console', '--timeout', '5m'], { timeoutMs: 330_000 });
    expect(again.code, again.stderr).toBe(0);
    expect((await guestRun(h, 'lc', 'mount -t ext2 /dev/vda /mnt && cat /mnt/marker')).out).toContain('clone\n');
    expect((await h.run(['stop', 'lc', '--force'])).code).toBe(0);
  }, 900_000);
});
