// disk create / info / convert / resize / list: raw and qcow2 images (src/disk). create, info,
// convert and resize work on the files directly (no daemon needed); list asks the daemon which
// VMs use which disks.

import { resolve } from 'node:path';
import type { Command } from 'commander';
import { formatSize, humanSize, looksLikeSize, parseSize } from '../../config/units.js';
import { convertImage } from '../../disk/convert.js';
import { DiskError } from '../../disk/errors.js';
import { createImage, IMAGE_FORMATS, imageInfo, resizeImage, type DiskImageInfo, type ImageFormat } from '../../disk/image.js';
import { vmctlHome } from '../../daemon/paths.js';
import type { VmInfo } from '../../protocol/messages.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { columns, out, printJson } from '../output.js';

function sizeArg(text: string, option = '--size'): number {
  const n = parseSize(text);
  if (n === null && looksLikeSize(text)) throw new CliError(EXIT.usage, `${option}: ${JSON.stringify(text)} is too large; expected e.g. 10GiB (less than 8192TiB)`);
  if (n === 0) throw new CliError(EXIT.usage, `${option}: ${JSON.stringify(text)} is empty; expected e.g. 10GiB (at least 512 bytes)`);
  if (n === null) throw new CliError(EXIT.usage, `${option}: ${JSON.stringify(text)} is not a size; expected e.g. 10GiB (units B, KiB, MiB, GiB, TiB)`);
  if (n % 512 !== 0) throw new CliError(EXIT.usage, `${option}: ${text} is not a multiple of 512 bytes (one sector)`);
  return n;
}

function formatArg(text: string): ImageFormat {
  if (!(IMAGE_FORMATS as readonly string[]).includes(text)) throw new CliError(EXIT.usage, `--format: ${JSON.stringify(text)} is not an image format; expected ${IMAGE_FORMATS.join(' or ')}`);
  return text as ImageFormat;
}

/** --cluster-size: a power of two from 512 bytes to 2 MiB, as log2. */
function clusterArg(text: string): number {
  const n = sizeArg(text, '--cluster-size');
  const bits = Math.log2(n);
  if (!Number.isInteger(bits) || bits > 21) throw new CliError(EXIT.usage, `--cluster-size: ${text} is not a power of two from 512 bytes to 2MiB`);
  return bits;
}

/** DiskError -> exit code: bad arguments 2, in use 5, anything else (missing, damaged, unsupported) 1. */
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
  // One line per holder: a writer alone, or every VM that shares the image read-only.
  return info.usedBy.map((u) => `${u.command !== undefined ? `vmctl ${u.command}` : `VM ${u.vm}`} (${u.readonly ? 'read-only' : 'read-write'}, pid ${u.pid} on ${u.host}, ${u.command !== undefined ? 'VMCTL_HOME' : 'daemon home'} ${u.home}, since ${u.since})`)
    .join('\n              ');
}

/** One image as `qemu-img info` shows it, in vmctl's words. */
function infoText(i: DiskImageInfo): string {
  const lines = [
    `image:        ${i.path}`,
    `file format:  ${i.format}`,
    `virtual size: ${bytesText(i.virtualBytes)}`,
    `disk size:    ${bytesText(i.allocatedBytes)}`,
  ];
  const q = i.qcow2;
  if (q) {
    lines.push(`cluster size: ${formatSize(q.clusterBytes)}`);
    if (i.backingFile !== null) {
      lines.push(`backing file: ${i.backingFile}${i.backingPath !== i.backingFile ? ` (actual path: ${i.backingPath})` : ''}`);
      lines.push(`backing file format: ${i.backingFormat ?? '- (not recorded; detected from its header)'}`);
    }
    lines.push(`qcow2:        version ${q.version} (compat ${q.version === 3 ? '1.1' : '0.10'}), ${q.refcountBits}-bit refcounts, lazy refcounts ${q.lazyRefcounts ? 'on' : 'off'}` +
      `${q.snapshots > 0 ? `, ${q.snapshots} internal snapshot${q.snapshots > 1 ? 's' : ''}` : ''}${q.corrupt ? ', ' + out.red('marked corrupt') : ''}${q.dirty ? ', ' + out.red('dirty') : ''}`);
  }
  lines.push(`used by:      ${usedByText(i)}`);
  return lines.join('\n') + '\n';
}

export function register(program: Command): void {
  const disk = program.command('disk').description('disk images (raw, qcow2 with backing files): create, info, convert, resize, list');

  disk
    .command('create <PATH>')
    .description('create an image: raw (sparse) or qcow2, possibly an overlay on a backing file')
    .option('--size <SIZE>', 'virtual size, e.g. 10GiB (default with --backing: the backing file\'s)')
    .option('--format <FORMAT>', 'raw or qcow2 (default: raw; qcow2 with --backing)')
    .option('--backing <FILE>', 'a qcow2 overlay on FILE (raw or qcow2): reads fall through to FILE, writes stay in PATH')
    .option('--cluster-size <SIZE>', 'qcow2 cluster size, 512B..2MiB (default 64KiB)')
    .action((path: string, o: { size?: string; format?: string; backing?: string; clusterSize?: string }) => {
      const abs = resolve(path);
      const format = o.format !== undefined ? formatArg(o.format) : o.backing !== undefined ? 'qcow2' : 'raw';
      if (o.backing !== undefined && format !== 'qcow2') throw new CliError(EXIT.usage, `--backing needs --format qcow2 (a raw image has no backing file)`);
      if (o.clusterSize !== undefined && format !== 'qcow2') throw new CliError(EXIT.usage, '--cluster-size applies to qcow2 images only');
      if (o.size === undefined && o.backing === undefined) throw new CliError(EXIT.usage, '--size is needed (or --backing FILE, whose size the new image takes)');
      const size = o.size !== undefined ? sizeArg(o.size) : undefined;
      const clusterBits = o.clusterSize !== undefined ? clusterArg(o.clusterSize) : undefined;
      diskCall(() => createImage(abs, { format, size, backing: o.backing, clusterBits }));
      const info = diskCall(() => imageInfo(abs));
      const what = format === 'raw' ? 'raw, sparse' : info.backingFile !== null ? `qcow2 on ${info.backingPath} (${info.backingFormat})` : 'qcow2';
      process.stdout.write(`Created ${abs}: ${formatSize(info.virtualBytes)} virtual, ${humanSize(info.allocatedBytes)} allocated (${what})\n`);
    });

  disk
    .command('info <PATH>')
    .description('format, virtual size, space allocated on the host, the backing chain, and the VMs using it')
    .option('--json', 'print {path, format, virtualBytes, allocatedBytes, backingFile, backingPath, backingFormat, qcow2, usedBy, backingChain}')
    .action((path: string, o: { json?: boolean }) => {
      const info = diskCall(() => imageInfo(resolve(path)));
      if (o.json) return printJson(info);
      process.stdout.write([info, ...info.backingChain].map(infoText).join('\n'));
    });

  disk
    .command('convert <SRC> <DST>')
    .description('copy what the guest sees in SRC into a new image DST (a qcow2 chain comes out flattened)')
    .requiredOption('--format <FORMAT>', 'format of DST: raw or qcow2')
    .action((src: string, dst: string, o: { format: string }) => {
      const format = formatArg(o.format);
      const from = resolve(src);
      const to = resolve(dst);
      diskCall(() => convertImage(from, to, format, vmctlHome()));
      const info = diskCall(() => imageInfo(to));
      process.stdout.write(`Converted ${from} to ${to}: ${formatSize(info.virtualBytes)} virtual, ${humanSize(info.allocatedBytes)} allocated (${format})\n`);
    });

  disk
    .command('resize <PATH>')
    .description('change the virtual size (raw: grows, also while a VM runs; shrinks with --shrink when unused. qcow2: grows, when unused)')
    .requiredOption('--size <SIZE>', 'new virtual size, e.g. 20GiB')
    .option('--shrink', 'allow making a raw disk smaller (data past the new end is lost)')
    .action((path: string, o: { size: string; shrink?: boolean }) => {
      const abs = resolve(path);
      const size = sizeArg(o.size);
      const r = diskCall(() => resizeImage(abs, size, { shrink: o.shrink === true, home: vmctlHome() }));
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
      process.stdout.write(columns(['VM', 'DISK', 'PATH', 'FORMAT', 'VIRTUAL', 'ALLOCATED', 'MODE', 'USED BY'], rows.map((r) => [
        r.vm, r.name, r.path, r.format ?? '-',
        r.virtualBytes === null ? out.red('missing') : humanSize(r.virtualBytes),
        r.allocatedBytes === null ? '-' : humanSize(r.allocatedBytes),
        r.readonly ? 'ro' : 'rw',
        r.usedBy.length === 0 ? '-' : r.usedBy.map((u) => (u.command !== undefined ? `vmctl ${u.command}` : u.vm === r.vm ? 'this VM' : `VM ${u.vm}`)).join(', '),
      ])));
    });
}
