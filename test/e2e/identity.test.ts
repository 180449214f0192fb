// Every VM has an identity: a UUID given at create, kept in its folder (state.json), shown by
// `info` and `info --json`, the same across daemon restarts; a VM stored before UUIDs existed
// gets one when first loaded, and keeps it.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function ok(args: string[]): Promise<string> {
  const r = await h.run(args);
  if (r.code !== 0) throw new Error(`vmctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}
const uuidOf = async (name: string): Promise<string> => JSON.parse(await ok(['info', name, '--json'])).uuid;
const stateFile = (name: string) => join(h.home, 'vms', name, 'state.json');

describe('VM identity', () => {
  it('a UUID at create, kept in the VM folder, shown by info, stable across daemon restarts; two VMs differ', async () => {
    await ok(['create', '-f', join(DEMO, 'loop.yaml'), '--name', 'one']);
    await ok(['create', '-f', join(DEMO, 'loop.yaml'), '--name', 'two']);
    const one = await uuidOf('one');
    expect(one).toMatch(UUID);
    expect(await uuidOf('two')).not.toBe(one);
    expect(JSON.parse(readFileSync(stateFile('one'), 'utf8')).uuid).toBe(one);
    expect(await ok(['info', 'one'])).toMatch(new RegExp(`\\nUUID: +${one}\\n`));
    await ok(['daemon', 'stop']);
    expect(await uuidOf('one')).toBe(one);
  });

  it('a VM stored without a UUID gets one on first load, persisted and kept', async () => {
    await ok(['daemon', 'stop']);
    const s = JSON.parse(readFileSync(stateFile('two'), 'utf8'));
    delete s.uuid;
    writeFileSync(stateFile('two'), JSON.stringify(s));
    const given = await uuidOf('two');
    expect(given).toMatch(UUID);
    expect(JSON.parse(readFileSync(stateFile('two'), 'utf8')).uuid).toBe(given);
    expect(readFileSync(join(h.home, 'vmd.log'), 'utf8')).toContain(`vm two: no UUID stored; gave it ${given}`);
    await ok(['daemon', 'stop']);
    expect(await uuidOf('two')).toBe(given);
  });
});
