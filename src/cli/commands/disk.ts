// disk create / info / resize / list: sparse raw images (src/disk). create, info and resize work
// on the file directly (no daemon needed); list asks the daemon which VMs use which disks.

import { resolve } from 'node:path';
import type { Command } from 'commander';
import Table from 'cli-table3';
import { formatSize, humanSize, looksLikeSize, parseSize } from '../../config/units.js';
import { DiskError } from '../../disk/errors.js';
import { createRawImage, imageInfo, resizeRawImage, type DiskImageInfo } from '../../disk/raw-image.js';
import type { VmInfo } from '../../protocol/messages.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { out, printJson } from '../output.js';

function sizeArg(text: string): number {
  const n = parseSize(text);
  if (n === null && looksLikeSize(text)) throw new CliError(EXIT.usage, `--size: ${JSON.stringify(text)} is too large; expected e.g. 10GiB (less than 8192TiB)`);
  if (n === 0) throw new CliError(EXIT.usage, `--size: ${JSON.stringify(text)} is empty; expected e.g. 10GiB (at least 512 bytes)`);
  if (n === null) throw new CliError(EXIT.usage, `--size: ${JSON.stringify(text)} is not a size; expected e.g. 10GiB (units B, KiB, MiB, GiB, TiB)`);
  if (n % 512 !== 0) throw new CliError(EXIT.usage, `--size: ${text} is not a multiple of 512 bytes (one sector)`);
  return n;
}

/** DiskError -> exit code: missing file 1, bad arguments 2, in use 5. */
function diskCall<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof DiskError)) throw e;
    const code = e.code === 'INVALID' || e.code === 'SHRINK' ? EXIT.usage : e.code === 'IN_USE' ? EXIT.wrongState : EXIT.failed;
    throw new CliError(code, e.message);
  }
}

/** "2.5GiB (2684354560 bytes)" */
const bytesText = (n: number): string => `${humanSize(n)} (${n} bytes)`;

function usedByText(info: DiskImageInfo): string {
  if (info.usedBy.length === 0) return '-';
  // One line per VM: a writer alone, or every VM that shares the image read-only.
  return info.usedBy.map((u) => `VM ${u.vm} (${u.readonly ? 'read-only' : 'read-write'}, pid ${u.pid} on ${u.host}, daemon home ${u.home}, since ${u.since})`)
    .join('\n              ');
}

export function register(program: Command): void {
  const disk = program.command('disk').description('sparse raw disk images: create, info, resize, list');

  disk
    .command('create <PATH>')
    .description('create a sparse raw image (takes no space until the guest writes)')
    .requiredOption('--size <SIZE>', 'virtual size, e.g. 10GiB')
    .action((path: string, o: { size: string }) => {
      const abs = resolve(path);
      const size = sizeArg(o.size);
      diskCall(() => createRawImage(abs, size));
      const info = diskCall(() => imageInfo(abs));
      process.stdout.write(`Created ${abs}: ${formatSize(info.virtualBytes)} virtual, ${humanSize(info.allocatedBytes)} allocated (raw, sparse)\n`);
    });

  disk
    .command('info <PATH>')
    .description('virtual size, space allocated on the host, and the VMs using it')
    .option('--json', 'print {path, virtualBytes, allocatedBytes, format, usedBy}')
    .action((path: string, o: { json?: boolean }) => {
      const info = diskCall(() => imageInfo(resolve(path)));
      if (o.json) return printJson(info);
      process.stdout.write([
        `image:        ${info.path}`,
        `file format:  ${info.format}`,
        `virtual size: ${bytesText(info.virtualBytes)}`,
        `disk size:    ${bytesText(info.allocatedBytes)}`,
        `used by:      ${usedByText(info)}`,
      ].join('\n') + '\n');
    });

  disk
    .command('resize <PATH>')
    .description('change the virtual size (grows; shrinking needs --shrink and a disk no VM uses)')
    .requiredOption('--size <SIZE>', 'new virtual size, e.g. 20GiB')
    .option('--shrink', 'allow making the disk smaller (data past the new end is lost)')
    .action((path: string, o: { size: string; shrink?: boolean }) => {
      const abs = resolve(path);
      const size = sizeArg(o.size);
      const r = diskCall(() => resizeRawImage(abs, size, { shrink: o.shrink === true }));
      const info = diskCall(() => imageInfo(abs));
      const verb = r.newBytes > r.oldBytes ? 'Grew' : r.newBytes < r.oldBytes ? 'Shrank' : 'Kept';
      process.stdout.write(`${verb} ${abs}: ${formatSize(r.oldBytes)} -> ${formatSize(r.newBytes)}\n`);
      if (info.usedBy.length > 0 && r.newBytes !== r.oldBytes) {
        const vms = info.usedBy.map((u) => u.vm);
        process.stdout.write(`${vms.length === 1 ? `VM ${vms[0]} is` : `VMs ${vms.join(', ')} are`} running: ` +
          `${vms.length === 1 ? 'its guest is' : 'their guests are'} told of the new capacity (virtio config change) within a second\n`);
      }
    });

  disk
    .command('list')
    .description("every VM's disks with their size and usage")
    .option('--json', 'print a JSON array')
    .action(async (o: { json?: boolean }) => {
      const c = await connectDaemon();
      const vms = await c.request<VmInfo[]>('vm.list');
      c.close();
      const rows = vms.flatMap((vm) => vm.disks.map((d) => {
        let info: DiskImageInfo | null = null;
        let problem: string | null = null;
        try { info = imageInfo(d.path); } catch (e) { problem = (e as Error).message; }
        return {
          vm: vm.name, vmState: vm.state, name: d.name, path: d.path, readonly: d.readonly, createdByVmctl: d.createdByVmctl,
          virtualBytes: info?.virtualBytes ?? null, allocatedBytes: info?.allocatedBytes ?? null, format: info?.format ?? null,
          usedBy: info?.usedBy ?? [], problem,
        };
      }));
      if (o.json) return printJson(rows);
      if (rows.length === 0) {
        process.stdout.write('No VM has disks.\n');
        return;
      }
      const table = new Table({
        head: ['VM', 'DISK', 'PATH', 'VIRTUAL', 'ALLOCATED', 'MODE', 'USED BY'].map((h) => out.bold(h)),
        style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 },
        chars: { top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  ' },
      });
      for (const r of rows) {
        table.push([
          r.vm, r.name, r.path,
          r.virtualBytes === null ? out.red('missing') : humanSize(r.virtualBytes),
          r.allocatedBytes === null ? '-' : humanSize(r.allocatedBytes),
          r.readonly ? 'ro' : 'rw',
          r.usedBy.length === 0 ? '-' : r.usedBy.map((u) => (u.vm === r.vm ? 'this VM' : `VM ${u.vm}`)).join(', '),
        ]);
      }
      process.stdout.write(`${table.toString().split('\n').map((l) => l.trimEnd()).join('\n')}\n`);
    });
}
