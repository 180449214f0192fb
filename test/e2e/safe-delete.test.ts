// `vmctl delete` never removes a disk image holding data by surprise: without a terminal it
// refuses (exit 5, naming the images and their allocated sizes) unless --delete-disks or
// --keep-disks says which; on a terminal it asks. Images that existed before `create` are never
// removed. --force keeps its meaning: power a running VM off first.

import { closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { humanSize } from '../../src/config/units.js';
import { DEMO, haveScript, onTty, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());

/** A VM with one image vmctl creates (`NAME-new.img`, 8 MiB) and one that exists before (`NAME-pre.img`). */
async function vmWithDisks(name: string): Promise<{ created: string; pre: string }> {
  const created = join(h.home, `${name}-new.img`);
  const pre = join(h.home, `${name}-pre.img`);
  writeFileSync(pre, Buffer.alloc(64 * 1024, 7));
  const f = join(h.home, `${name}.yaml`);
  writeFileSync(f, `name: ${name}\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'loop.elf')}\ndisks:\n  - path: ${name}-new.img\n    size: 8MiB\n  - path: ${name}-pre.img\n`);
  await h.ok(['create', '-f', f]);
  expect(statSync(created).blocks).toBe(0); // sparse: nothing written yet
  return { created, pre };
}

/** What a guest's writes do to the image: 192 KiB of data in the middle. Returns the host space
 *  the image now takes, as vmctl reports it (the file system decides: 192KiB on ext4). */
function writeData(img: string): string {
  const data = Buffer.alloc(192 * 1024, 0x5a);
  const fd = openSync(img, 'r+');
  writeSync(fd, data, 0, data.length, 1024 * 1024);
  closeSync(fd);
  expect(statSync(img).blocks).toBeGreaterThan(0);
  return humanSize(statSync(img).blocks * 512);
}

const listed = async (): Promise<string[]> => JSON.parse(await h.ok(['list', '--json'])).map((v: { name: string }) => v.name);

describe('delete, without a terminal', () => {
  it('refuses (exit 5) when an image vmctl created holds data, naming it and its size; nothing changes', async () => {
    const { created, pre } = await vmWithDisks('held');
    const size = writeData(created);
    const r = await h.run(['delete', 'held']);
    expect(r.code, r.stderr).toBe(5);
    expect(r.stderr).toContain(`VM held has a disk image that vmctl created and that holds data: ${created} (${size} allocated, 8MiB virtual)`);
    expect(r.stderr).toContain('--delete-disks');
    expect(r.stderr).toContain('--keep-disks');
    expect(await listed()).toContain('held');
    expect(humanSize(statSync(created).blocks * 512)).toBe(size);

    // --keep-disks: the VM goes, the image stays with its data; the pre-existing one too.
    const k = await h.run(['delete', 'held', '--keep-disks']);
    expect(k.code, k.stderr).toBe(0);
    expect(k.stdout).toBe(`Deleted VM held\n  kept disk image ${created} (${size} allocated)\n`);
    expect(await listed()).not.toContain('held');
    expect(readFileSync(created).subarray(1024 * 1024, 1024 * 1024 + 192 * 1024)).toEqual(Buffer.alloc(192 * 1024, 0x5a));
    expect(readFileSync(pre)).toEqual(Buffer.alloc(64 * 1024, 7));
  });

  it('--delete-disks removes the images vmctl created, never one that existed before create', async () => {
    const { created, pre } = await vmWithDisks('gone');
    writeData(created);
    const allocated = statSync(created).blocks * 512;
    const r = await h.run(['delete', 'gone', '--delete-disks', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ deleted: 'gone', disks: [{ path: created, allocatedBytes: allocated, action: 'deleted' }] });
    expect(existsSync(created)).toBe(false);
    expect(readFileSync(pre)).toEqual(Buffer.alloc(64 * 1024, 7));
  });

  it('an image without data (nothing allocated) goes without being asked', async () => {
    const { created, pre } = await vmWithDisks('empty');
    const r = await h.run(['delete', 'empty']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`Deleted VM empty\n  removed disk image ${created} (0B allocated)\n`);
    expect(existsSync(created)).toBe(false);
    expect(existsSync(pre)).toBe(true);
  });

  it('--force powers a running VM off first, and still does not take the disks by surprise', async () => {
    const { created } = await vmWithDisks('busy');
    writeData(created);
    await h.ok(['start', 'busy']);
    // No word about the disks: refused before anything happens, the VM keeps running.
    const r = await h.run(['delete', 'busy', '--force']);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain(created);
    expect((await h.info('busy')).state).toBe('running');
    // Without --force a running VM is refused whatever is said about the disks.
    expect((await h.run(['delete', 'busy', '--delete-disks'])).code).toBe(5);
    expect((await h.info('busy')).state).toBe('running');
    const f = await h.run(['delete', 'busy', '--force', '--delete-disks']);
    expect(f.code, f.stderr).toBe(0);
    expect(existsSync(created)).toBe(false);
  });

  it('--delete-disks and --keep-disks together are a usage error', async () => {
    await vmWithDisks('both');
    const r = await h.run(['delete', 'both', '--delete-disks', '--keep-disks']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('give at most one of --delete-disks and --keep-disks');
    expect(r.stderr).toContain('(run vmctl delete --help for usage)');
    expect(await listed()).toContain('both');
  });
});

describe.skipIf(!haveScript)('delete, on a terminal', () => {
  it('asks, naming the images and their allocated sizes: n keeps everything, k keeps the images, y removes them', async () => {
    const { created } = await vmWithDisks('asked');
    const size = writeData(created);
    const no = await onTty(h, ['delete', 'asked'], ['n\r'], { NO_COLOR: '1' });
    expect(no.out).toContain(`VM asked has a disk image that vmctl created and that holds data:\r\n  ${created}  ${size} allocated (8MiB virtual)`);
    expect(no.out).toContain('Delete it with the VM? [y]es, delete / [k]eep / [N]o, cancel:');
    expect(no.code).toBe(1);
    expect(no.out).toContain('nothing deleted');
    expect(await listed()).toContain('asked');

    const keep = await onTty(h, ['delete', 'asked'], ['k\r'], { NO_COLOR: '1' });
    expect(keep.code, keep.out).toBe(0);
    expect(keep.out).toContain(`kept disk image ${created}`);
    expect(existsSync(created)).toBe(true);
    expect(await listed()).not.toContain('asked');

    const again = await vmWithDisks('asked2');
    writeData(again.created);
    const yes = await onTty(h, ['delete', 'asked2'], ['y\r'], { NO_COLOR: '1' });
    expect(yes.code, yes.out).toBe(0);
    expect(yes.out).toContain(`removed disk image ${again.created}`);
    expect(existsSync(again.created)).toBe(false);
  });
});
