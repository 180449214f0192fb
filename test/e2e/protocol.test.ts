// The raw socket protocol: greeting, hello, ids, error classes, and hostile input that must get
// an error reply (or a closed connection) but never take the daemon down.

import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, DEMO, VmctlHome } from './harness.js';

const h = new VmctlHome();
let pid: number;

beforeAll(async () => {
  expect((await h.run(['daemon', 'start'])).code).toBe(0);
  pid = h.pid()!;
});
afterAll(() => h.cleanup());

/** A raw connection collecting the JSON lines the daemon sends. */
class Raw {
  readonly sock: Socket;
  readonly lines: unknown[] = [];
  private buf = '';
  closed = false;
  private waiters: (() => void)[] = [];

  constructor() {
    this.sock = connect(join(h.home, 'vmd.sock'));
    this.sock.on('data', (b) => {
      this.buf += b.toString();
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        this.lines.push(JSON.parse(this.buf.slice(0, i)));
        this.buf = this.buf.slice(i + 1);
      }
      this.wake();
    });
    this.sock.on('error', () => {});
    this.sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  async next(n = 1): Promise<unknown[]> {
    const deadline = Date.now() + 5000;
    while (this.lines.length < n && !this.closed) {
      if (Date.now() > deadline) throw new Error(`expected ${n} lines, got ${JSON.stringify(this.lines)}`);
      await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 100); });
    }
    return this.lines.splice(0, n);
  }

  send(text: string | Buffer): void {
    this.sock.write(text);
  }

  async hello(): Promise<void> {
    const [g] = await this.next();
    expect(g).toMatchObject({ hello: { protocol: 1, server: 'vmd', pid } });
    this.send('{"id":0,"method":"hello","params":{"protocol":1}}\n');
    expect(await this.next()).toEqual([{ id: 0, result: { protocol: 1 } }]);
  }
}

async function stillServes(): Promise<void> {
  expect(alive(pid)).toBe(true);
  const r = await h.run(['list', '--json']);
  expect(r.code).toBe(0);
}

describe('protocol', () => {
  it('greets, requires hello first, answers by id', async () => {
    const c = new Raw();
    const [g] = await c.next();
    expect(g).toMatchObject({ hello: { protocol: 1, version: expect.any(String) } });
    c.send('{"id":1,"method":"vm.list"}\n');
    expect(await c.next()).toEqual([{ id: 1, error: { class: 'ProtocolError', message: expect.stringContaining('hello') } }]);
    c.send('{"id":"a","method":"hello","params":{"protocol":1}}\n{"id":"b","method":"vm.list"}\n');
    expect(await c.next(2)).toEqual([{ id: 'a', result: { protocol: 1 } }, { id: 'b', result: [] }]);
    c.sock.destroy();
  });

  it('rejects another protocol version and closes', async () => {
    const c = new Raw();
    await c.next();
    c.send('{"id":1,"method":"hello","params":{"protocol":99}}\n');
    expect(await c.next()).toEqual([{ id: 1, error: { class: 'VersionMismatch', message: expect.stringContaining('protocol 1') } }]);
    await c.next(1); // close
    expect(c.closed).toBe(true);
  });

  it.each([
    ['malformed JSON', '{"id":1,"method":', { id: null, error: { class: 'ProtocolError', message: expect.stringContaining('malformed JSON') } }],
    ['not an object', '[1,2,3]', { id: null, error: { class: 'ProtocolError', message: expect.any(String) } }],
    ['a bare string', '"hello"', { id: null, error: { class: 'ProtocolError', message: expect.any(String) } }],
    ['unknown method', '{"id":7,"method":"vm.explode"}', { id: 7, error: { class: 'UnknownMethod', message: 'unknown method "vm.explode"' } }],
    ['unknown request field', '{"id":8,"method":"vm.list","extra":1}', { id: 8, error: { class: 'ProtocolError', message: expect.stringContaining('"extra"') } }],
    ['unknown parameter', '{"id":9,"method":"vm.info","params":{"name":"x","color":"red"}}', { id: 9, error: { class: 'InvalidParams', message: expect.stringContaining('"color"') } }],
    ['wrong parameter type', '{"id":10,"method":"vm.start","params":{"name":42}}', { id: 10, error: { class: 'InvalidParams', message: expect.stringContaining('must be a string') } }],
    ['missing parameter', '{"id":11,"method":"vm.stop","params":{}}', { id: 11, error: { class: 'InvalidParams', message: expect.stringContaining('missing parameter "name"') } }],
    ['params not an object', '{"id":12,"method":"vm.list","params":[1]}', { id: 12, error: { class: 'InvalidParams', message: expect.any(String) } }],
    ['bad id', '{"id":{"x":1},"method":"vm.list"}', { id: null, error: { class: 'ProtocolError', message: expect.any(String) } }],
    ['no such VM', '{"id":13,"method":"vm.info","params":{"name":"ghost"}}', { id: 13, error: { class: 'NoSuchVm', message: 'no VM named "ghost"' } }],
    ['a path as a VM name', '{"id":14,"method":"vm.delete","params":{"name":"../../etc"}}', { id: 14, error: { class: 'NoSuchVm', message: expect.any(String) } }],
    ['a prototype key', '{"id":15,"method":"__proto__"}', { id: 15, error: { class: 'UnknownMethod', message: expect.any(String) } }],
    // Parameters are read from a null-prototype copy: prototype keys are unknown, not "a undefined".
    ['a "__proto__" parameter', '{"id":16,"method":"vm.info","params":{"name":"x","__proto__":{"a":1}}}', { id: 16, error: { class: 'InvalidParams', message: 'vm.info: unknown parameter "__proto__"; expected name' } }],
    ['a "constructor" parameter', '{"id":17,"method":"vm.list","params":{"constructor":1}}', { id: 17, error: { class: 'InvalidParams', message: 'vm.list: unknown parameter "constructor"; it takes none' } }],
    ['a "toString" parameter', '{"id":18,"method":"vm.start","params":{"name":"x","toString":"y"}}', { id: 18, error: { class: 'InvalidParams', message: expect.stringContaining('unknown parameter "toString"') } }],
    ['a "hasOwnProperty" request field', '{"id":19,"method":"vm.list","hasOwnProperty":1}', { id: 19, error: { class: 'ProtocolError', message: expect.stringContaining('unknown request field "hasOwnProperty"') } }],
    ['invalid UTF-8', Buffer.from([0xff, 0xfe, 0x7b, 0x0a]), { id: null, error: { class: 'ProtocolError', message: expect.stringContaining('UTF-8') } }],
  ])('%s gets an error reply', async (_what, line, reply) => {
    const c = new Raw();
    await c.hello();
    c.send(typeof line === 'string' ? `${line}\n` : line);
    expect(await c.next()).toEqual([reply]);
    // The same connection keeps working.
    c.send('{"id":99,"method":"daemon.status"}\n');
    expect(await c.next()).toEqual([{ id: 99, result: expect.objectContaining({ pid }) }]);
    c.sock.destroy();
    await stillServes();
  });

  it('streams state, console and power events to a subscriber', async () => {
    expect((await h.run(['create', '-f', join(DEMO, 'demo.yaml'), '--name', 'evt'])).code).toBe(0);
    const c = new Raw();
    await c.hello();
    c.send('{"id":1,"method":"vm.subscribe","params":{"name":"evt","console":true}}\n');
    expect(await c.next()).toEqual([{ id: 1, result: { state: 'stopped', bootId: 0 } }]);
    c.send('{"id":2,"method":"vm.start","params":{"name":"evt"}}\n');
    const seen: any[] = [];
    const deadline = Date.now() + 30_000;
    while (!seen.some((m) => m.event === 'state' && m.data.state === 'stopped') && Date.now() < deadline) seen.push(...(await c.next()));
    const events = seen.filter((m) => m.event);
    for (const e of events) {
      expect(e.vm).toBe('evt');
      expect(Number.isNaN(Date.parse(e.timestamp))).toBe(false);
      expect(e.data.bootId).toBe(1);
    }
    expect(events.filter((e) => e.event === 'state').map((e) => e.data.state)).toEqual(['starting', 'running', 'stopped']);
    const text = Buffer.concat(events.filter((e) => e.event === 'console').map((e) => Buffer.from(e.data.data, 'base64'))).toString();
    expect(text).toContain('Hello from a RISC-V guest running in vmctl');
    expect(events.find((e) => e.event === 'power')?.data).toEqual({ bootId: 1, kind: 'poweroff', code: 0, failed: false, source: 'test-finisher' });
    expect(seen.find((m) => m.id === 2)).toMatchObject({ id: 2, result: { name: 'evt' } });
    c.send('{"id":3,"method":"vm.delete","params":{"name":"evt"}}\n');
    expect(await c.next(2)).toEqual([{ event: 'deleted', vm: 'evt', data: {}, timestamp: expect.any(String) }, { id: 3, result: { deleted: 'evt', disks: [] } }]);
    c.sock.destroy();
  });

  it('never echoes an unbounded value: a huge id, method, parameter name or VM name is cut with its length', async () => {
    const c = new Raw();
    await c.hello();
    const big = 'x'.repeat(900_000);
    const short = (m: string) => m.length < 400;
    c.send(`{"id":"${big}","method":"vm.list"}\n`);
    const [idReply] = (await c.next()) as any[];
    // The reply cannot echo an id that is not one.
    expect(idReply).toEqual({ id: null, error: { class: 'ProtocolError', message: expect.stringContaining('… (900000 bytes)') } });
    expect(short(idReply.error.message)).toBe(true);
    c.send(`{"id":2,"method":"${big}"}\n`);
    c.send(`{"id":3,"method":"vm.list","params":{"${big}":1}}\n`);
    c.send(`{"id":4,"method":"vm.info","params":{"name":"${big}"}}\n`);
    const replies = (await c.next(3)) as any[];
    expect(replies.map((r) => [r.id, r.error.class])).toEqual([[2, 'UnknownMethod'], [3, 'InvalidParams'], [4, 'NoSuchVm']]);
    for (const r of replies) {
      expect(r.error.message).toContain('… (900000 bytes)');
      expect(short(r.error.message)).toBe(true);
    }
    c.sock.destroy();
    await stillServes();
  });

  it('bounds the line length', async () => {
    const c = new Raw();
    await c.hello();
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    for (let i = 0; i < 5; i++) c.send(chunk); // 1.25 MiB without a newline
    c.send('\n{"id":2,"method":"vm.list"}\n');
    expect(await c.next(2)).toEqual([
      { id: null, error: { class: 'ProtocolError', message: expect.stringContaining("longer than 1048576 bytes, the protocol's limit for one line") } },
      { id: 2, result: [] },
    ]);
    c.sock.destroy();
    await stillServes();
  });

  it('drops a client that sends only garbage, and survives abrupt disconnects', async () => {
    const c = new Raw();
    await c.next();
    for (let i = 0; i < 100; i++) c.send('garbage\n');
    await c.next(64);
    const deadline = Date.now() + 5000;
    while (!c.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(c.closed).toBe(true);
    for (let i = 0; i < 20; i++) {
      const s = connect(join(h.home, 'vmd.sock'));
      s.on('error', () => {});
      s.write('{"id":1,"method":"hello","params":{"protocol":1}}\n{"id":2,"meth');
      s.destroy();
    }
    await stillServes();
  });
});
