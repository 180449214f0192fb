// The daemon's definition threads (src/daemon/definition-pool.ts, the built
// dist/definition-worker.js: run `npm run build` first): a thread that checked a definition is
// reused while requests keep coming and ended soon after they stop, so a VM started just after
// its `create` does not find the thread's memory still held.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DefinitionPool } from '../../src/daemon/definition-pool.js';

const WORKER = fileURLToPath(new URL('../../dist/definition-worker.js', import.meta.url));

describe('DefinitionPool', () => {
  it('reuses its thread for back-to-back checks and ends it within seconds of the last', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmctl-defpool-'));
    const pool = new DefinitionPool(WORKER, () => {});
    try {
      writeFileSync(join(dir, 'k.bin'), new Uint8Array(64));
      const text = (name: string) => `name: ${name}\ncpus: 1\nmemory: 16MiB\nboot:\n  firmware: none\n  kernel: ./k.bin\n`;
      const file = join(dir, 'vm.yaml');
      expect((await pool.validate(text('a'), file, {})).name).toBe('a');
      expect(pool.threadCount).toBe(1);
      expect((await pool.validate(text('b'), file, {})).name).toBe('b');
      expect(pool.threadCount).toBe(1);
      const t0 = Date.now();
      // Ended 2 s after the last check; 8 s leaves room for a loaded host (it was 10 s before).
      while (pool.threadCount > 0 && Date.now() - t0 < 8_000) await new Promise((r) => setTimeout(r, 100));
      expect(pool.threadCount).toBe(0);
      // The next check starts a thread again.
      expect((await pool.validate(text('c'), file, {})).name).toBe('c');
    } finally {
      pool.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
