// The daemon's event loop stays free: the heaviest `vm.create` requests we could build, sent
// straight over the socket as a hostile client would (the CLI validates first, the socket must be
// safe on its own), are validated off the main thread while other clients are answered at once.
// Within the YAML limits (src/config/yaml-schema.ts) the slowest found are files of ~10,000
// unknown keys (each gets a "did you mean"), aliases or anchors: seconds each on a loaded machine;
// over the limits, 40,000 keys and 100,000 levels of nesting are refused while being read.

import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO, VmctlHome } from './harness.js';

const h = new VmctlHome();
beforeAll(async () => {
  expect((await h.run(['daemon', 'start'])).code).toBe(0);
});
afterAll(() => h.cleanup());

/** A raw connection: sends lines, resolves replies by id. */
class Raw {
  readonly sock: Socket;
  private buf = '';
  private readonly waiting = new Map<number, (reply: any) => void>();
  readonly greeted: Promise<void>;

  constructor() {
    this.sock = connect(join(h.home, 'vmd.sock'));
    this.sock.on('error', () => {});
    let greet!: () => void;
    this.greeted = new Promise((r) => { greet = r; });
    this.sock.on('data', (b) => {
      this.buf += b.toString();
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const m = JSON.parse(this.buf.slice(0, i));
        this.buf = this.buf.slice(i + 1);
        if (m.hello) greet();
        else this.waiting.get(m.id)?.(m);
      }
    });
  }

  request(id: number, method: string, params: Record<string, unknown> = {}): Promise<any> {
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.sock.write(`${JSON.stringify({ id, method, params })}\n`);
    });
  }

  async hello(): Promise<void> {
    await this.greeted;
    await this.request(0, 'hello', { protocol: 1 });
  }
}

const head = `name: big\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'hello.elf')}\n`;
const worst: Record<string, string> = {
  '9,900 unknown keys': head + Array.from({ length: 9_900 }, (_, i) => `k${String(i).padStart(5, '0')}: 1`).join('\n') + '\n',
  '9,900 aliases': `${head}a: &a [1]\n${Array.from({ length: 9_900 }, (_, i) => `b${i}: *a`).join('\n')}\n`,
  '4,900 anchors and their aliases': head + Array.from({ length: 4_900 }, (_, i) => `a${i}: &x${i} ${i}`).join('\n') + '\n' + Array.from({ length: 4_900 }, (_, i) => `b${i}: *x${4_899 - i}`).join('\n') + '\n',
  '40,000 keys': head + Array.from({ length: 40_000 }, (_, i) => `k${String(i).padStart(5, '0')}: 1`).join('\n') + '\n',
  '100,000 levels of nesting': `${head}x: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`,
};

describe('the event loop', () => {
  it('answers `list` from other clients at once while the worst vm.create requests are validated', async () => {
    const hostile = new Raw();
    await hostile.hello();
    const file = join(h.home, 'big.yaml');
    let outstanding = 0;
    const replies = Object.values(worst).map((text, i) => {
      outstanding++;
      return hostile.request(10 + i, 'vm.create', { file, text }).finally(() => { outstanding--; });
    });

    // Another client, connecting afresh each time (greeting, hello, vm.list), as `vmctl list` does.
    const samples: number[] = [];
    const until = Date.now() + 8000;
    while (Date.now() < until && outstanding > 0) {
      const t0 = performance.now();
      const c = new Raw();
      await c.hello();
      const r = await c.request(1, 'vm.list');
      const ms = performance.now() - t0;
      c.sock.destroy();
      expect(r).toEqual({ id: 1, result: [] });
      if (outstanding > 0) samples.push(ms);
    }
    const cli = await h.run(['list', '--json']);
    expect(cli.code).toBe(0);

    samples.sort((a, b) => a - b);
    const median = samples[Math.floor(samples.length / 2)];
    const max = samples[samples.length - 1];
    process.stderr.write(`event-loop: ${samples.length} vm.list round trips (connect, greeting, hello, list) while validating: median ${median.toFixed(1)} ms, max ${max.toFixed(1)} ms\n`);
    expect(samples.length).toBeGreaterThanOrEqual(3);
    expect(max).toBeLessThan(2000);

    // Each is refused as a config error (its problems, or the validation time limit), none crashes.
    for (const r of await Promise.all(replies)) {
      expect(r.error?.class, JSON.stringify(r).slice(0, 300)).toBe('ConfigError');
      expect(r.error.message.length).toBeLessThan(40_000); // 100 problems at most, values cut
    }
    hostile.sock.destroy();
  }, 180_000);
});
