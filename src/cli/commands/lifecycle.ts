// create, start, stop, restart, reset, pause, resume, delete.
//
// Asking for a state that already holds is not an error (exit 0, saying so): stop of a stopped VM,
// pause of a paused one, resume of a running one. Asking for something the VM's state makes
// different from what was asked is exit 5: start of a running VM (it would be a second boot),
// reset of a stopped one (it would be a first boot). See the README's exit-code section.

import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { formatSize, humanSize } from '../../config/units.js';
import type { DeletedDisk, DiskInfo, EventMessage, StopPath, VmInfo } from '../../protocol/messages.js';
import { cpusText, durationOption, isDeletion, loadDefinitionOrExit, stopText, unb64, vmEnded } from '../cli-helpers.js';
import { compilePattern, ConsoleText } from '../console-match.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { confirm, err, out, printJson, spinner, stateColor } from '../output.js';

/** --timeout of stop and restart: the wait for the guest after typing shutdown.console. */
const STOP_TIMEOUT_HELP = 'how long to wait for the guest after typing shutdown.console before powering off (default: the VM file\'s shutdown.timeout, else 30s; 0 = no limit)';

export function register(program: Command): void {
  program
    .command('create')
    .description('register a VM from a YAML file (state: stopped)')
    .requiredOption('-f, --file <FILE>', 'VM definition (see vm-config.example.yaml)')
    .option('--name <NAME>', 'use this name instead of the one in the file')
    .option('--json', 'print the new VM as JSON')
    .action(async (o: { file: string; name?: string; json?: boolean }) => {
      const { abs, text } = loadDefinitionOrExit(o.file, o.name);
      const c = await connectDaemon();
      const info = await c.request<VmInfo & { warnings: string[] }>('vm.create', { file: abs, text, ...(o.name ? { name: o.name } : {}) });
      c.close();
      for (const w of info.warnings ?? []) process.stderr.write(`${err.yellow('warning:')} ${w}\n`);
      if (o.json) printJson(info);
      else process.stdout.write(`Created VM ${out.bold(info.name)} (${cpusText(info.cpus)}, ${humanSize(info.memoryBytes)}), state ${stateColor(info.state)}\n`);
    });

  program
    .command('start <NAME>')
    .description('boot a VM, or resume a saved one where it was')
    .option('--wait-for <REGEX>', 'return once console output of this boot matches (after a resume: output from then on)')
    .option('--timeout <DUR>', 'give up after this long (exit 124): the start itself (boot images loaded, machine up) and, with --wait-for, the wait too; 0 = no limit')
    .option('--discard-state', 'a saved VM: drop its saved state and boot afresh')
    .option('--json', 'print the VM as JSON')
    .action(async (name: string, o: { waitFor?: string; timeout?: string; discardState?: boolean; json?: boolean }) => {
      const timeoutMs = durationOption(o.timeout, '--timeout');
      const re = o.waitFor !== undefined ? compilePattern(o.waitFor, '--wait-for') : null;
      const c = await connectDaemon();
      // Subscribe before starting so no output of the new boot is missed; the new boot's id is
      // one more than the current one (a resumed VM goes on with its boot: its new output counts).
      const sub = await c.request<{ bootId: number; state: string }>('vm.subscribe', { name, console: re !== null });
      const resuming = sub.state === 'saved' && !o.discardState;
      const firstBoot = resuming ? sub.bootId : sub.bootId + 1;
      const verb = resuming ? 'resuming' : 'starting';
      const text = new ConsoleText();
      const sp = spinner(re ? `${verb} ${name}, waiting for /${o.waitFor}/` : `${verb} ${name}`, !o.json);
      let started: VmInfo | null = null;
      const result = await new Promise<{ code: number; message: string }>((resolve, reject) => {
        let over = false;
        const finish = (r: { code: number; message: string }) => {
          if (over) return;
          over = true;
          clearTimeout(timer);
          resolve(r);
        };
        const timer = timeoutMs ? setTimeout(() => finish(started
          ? { code: EXIT.timeout, message: `timed out after ${o.timeout} waiting for /${o.waitFor}/ (VM ${name} keeps running)` }
          : { code: EXIT.timeout, message: `VM ${name} did not finish starting within ${o.timeout} (it goes on starting; see vmctl info ${name})` }), timeoutMs) : undefined;
        if (re) {
          c.onEvent((e: EventMessage) => {
            if (e.vm !== name) return;
            const bootId = e.data.bootId as number | undefined;
            if (isDeletion(e)) {
              finish({ code: EXIT.noSuchVm, message: `VM ${name} was deleted before its console matched /${o.waitFor}/` });
              return;
            }
            if (bootId !== undefined && bootId < firstBoot) return;
            if (e.event === 'state' && e.data.previous === 'saved') return; // the resume itself
            if (e.event === 'console') {
              text.push(unb64(e.data.data as string));
              if (text.test(re)) finish({ code: EXIT.ok, message: `VM ${name} is up: console matched /${o.waitFor}/` });
            } else if (vmEnded(e)) {
              finish({ code: EXIT.failed, message: `VM ${name} stopped (${String(e.data.state)}) before the console matched /${o.waitFor}/` });
            }
          });
        }
        c.onClose(() => finish({ code: EXIT.unreachable, message: 'the daemon closed the connection' }));
        c.request<VmInfo>('vm.start', { name, ...(o.discardState ? { discardState: true } : {}) }).then((info) => {
          started = info;
          if (!re) finish({ code: EXIT.ok, message: `${resuming ? 'Resumed' : 'Started'} VM ${out.bold(name)}, state ${stateColor(info.state)}` });
        }, (e) => {
          if (over) return;
          over = true;
          clearTimeout(timer);
          reject(e);
        });
      }).finally(() => sp.stop());
      c.close();
      if (result.code !== EXIT.ok) throw new CliError(result.code, result.message);
      if (o.json) printJson(re ? { name, matched: true } : started);
      else process.stdout.write(`${result.message}\n`);
    });

  program
    .command('stop <NAME>')
    .description('stop a VM: type shutdown.console and wait for the guest, or power off; a saved VM: discard its state')
    .option('--timeout <DUR>', STOP_TIMEOUT_HELP)
    .option('--force', 'power off at once')
    .option('--discard-state', 'a saved VM: discard its saved state without asking (the VM is then stopped)')
    .option('--json', 'print the result as JSON')
    .action(async (name: string, o: { timeout?: string; force?: boolean; discardState?: boolean; json?: boolean }) => {
      if (!o.discardState && process.stdin.isTTY) {
        // Stopping a saved VM loses what its guest was doing: asked on a terminal; a script must
        // say so (--discard-state), as --force keeps its meaning (power off at once).
        const c = await connectDaemon();
        const v = await c.request<VmInfo>('vm.info', { name });
        c.close();
        if (v.state === 'saved') {
          const size = v.savedState ? ` (${humanSize(v.savedState.bytes)}, saved ${v.savedState.savedAt})` : '';
          if (!await confirm(`VM ${name} is saved${size}. Discard its saved state? Its guest then boots afresh at the next start. [y/N] `)) {
            throw new CliError(EXIT.wrongState, `kept the saved state of VM ${name}`);
          }
          o = { ...o, discardState: true };
        }
      }
      const r = await stopLike('vm.stop', `stopping ${name}`, name, o);
      if (o.json) printJson(r);
      else process.stdout.write(`${stopText(name, r.path, r.state)}\n`);
    });

  program
    .command('restart <NAME>')
    .description('stop a VM as stop does, then boot it again (attached consoles stay attached); starts a stopped VM')
    .option('--timeout <DUR>', STOP_TIMEOUT_HELP)
    .option('--force', 'power off at once instead of typing shutdown.console')
    .option('--json', 'print the result as JSON')
    .action(async (name: string, o: { timeout?: string; force?: boolean; json?: boolean }) => {
      const r = await stopLike('vm.restart', `restarting ${name}`, name, o);
      if (o.json) printJson(r);
      else if (r.path === 'already-stopped') process.stdout.write(`VM ${name} was not running; started it (boot ${r.bootId}), state ${stateColor(r.state)}\n`);
      else process.stdout.write(`${stopText(name, r.path, r.state)}; started it again (boot ${r.bootId}), state ${stateColor(r.state)}\n`);
    });

  program
    .command('reset <NAME>')
    .description('hard reset: end the current boot at once, as a guest\'s own reset does (disks flushed), and boot again')
    .option('--json', 'print the VM as JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const c = await connectDaemon();
      const info = await c.request<VmInfo>('vm.reset', { name });
      c.close();
      if (o.json) printJson(info);
      else process.stdout.write(`Reset VM ${name}: boot ${info.bootId}, state ${stateColor(info.state)}\n`);
    });

  for (const [verb, method, done, already] of [['pause', 'vm.pause', 'Paused', 'paused'], ['resume', 'vm.resume', 'Resumed', 'running']] as const) {
    program
      .command(`${verb} <NAME>`)
      .description(verb === 'pause' ? 'freeze a running VM (its clock stands still)' : 'continue a paused VM')
      .option('--json', 'print the VM as JSON')
      .action(async (name: string, o: { json?: boolean }) => {
        const c = await connectDaemon();
        const info = await c.request<VmInfo & { changed: boolean }>(method, { name });
        c.close();
        if (o.json) printJson(info);
        else if (!info.changed) process.stdout.write(`VM ${name} is already ${already}\n`);
        else process.stdout.write(`${done} VM ${name}, state ${stateColor(info.state)}\n`);
      });
  }

  program
    .command('save <NAME>')
    .description('save a running or paused VM: its whole machine state to a file, then stop it (state: saved; start resumes it)')
    .option('--json', 'print the VM as JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const c = await connectDaemon();
      const sp = spinner(`saving ${name}`, !o.json);
      let info: VmInfo & { saveSeconds: number };
      try {
        info = await c.request<VmInfo & { saveSeconds: number }>('vm.save', { name });
      } finally {
        sp.stop();
      }
      c.close();
      if (o.json) printJson(info);
      else process.stdout.write(`Saved VM ${out.bold(name)} (${humanSize(info.savedState?.bytes ?? 0)} in ${info.saveSeconds.toFixed(1)} s), state ${stateColor(info.state)}\n`);
    });

  program
    .command('delete <NAME>')
    .description('remove a VM; disk images vmctl created for it that hold data go only when you say so')
    .option('--force', 'power off a running VM first')
    .option('--delete-disks', 'also remove the disk images vmctl created for it (never images that existed before create)')
    .option('--keep-disks', 'keep the disk images vmctl created for it')
    .option('--flatten-clones', 'linked clones built on its disk layers first get what they need copied into their own')
    .option('--json', 'print what was removed as JSON')
    .action(async (name: string, o: { force?: boolean; deleteDisks?: boolean; keepDisks?: boolean; flattenClones?: boolean; json?: boolean }) => {
      if (o.deleteDisks && o.keepDisks) throw new CliError(EXIT.usage, 'give at most one of --delete-disks and --keep-disks');
      let disks: 'delete' | 'keep' | undefined = o.deleteDisks ? 'delete' : o.keepDisks ? 'keep' : undefined;
      const c = await connectDaemon();
      if (disks === undefined && process.stdin.isTTY) {
        // On a terminal, ask rather than refuse. (Without one, the daemon refuses with exit 5,
        // naming the images, when they hold data.)
        const info = await c.request<VmInfo>('vm.info', { name });
        const running = info.state !== 'stopped' && info.state !== 'aborted';
        const full = info.disks.filter((d) => d.createdByVmctl && (d.allocatedBytes ?? 0) > 0);
        if (full.length > 0 && (!running || o.force)) {
          const answer = await askAboutDisks(name, full);
          if (answer === null) {
            c.close();
            throw new CliError(EXIT.failed, `nothing deleted: VM ${name} and its disk images stay as they were`);
          }
          disks = answer;
        }
      }
      const r = await c.request<{ deleted: string; disks: DeletedDisk[] }>('vm.delete', { name, ...(o.force ? { force: true } : {}), ...(disks ? { disks } : {}), ...(o.flattenClones ? { flattenClones: true } : {}) });
      c.close();
      if (o.json) return printJson(r);
      process.stdout.write(`Deleted VM ${name}\n`);
      for (const d of r.disks) {
        process.stdout.write(d.action === 'deleted'
          ? `  removed disk image ${d.path} (${humanSize(d.allocatedBytes)} allocated)\n`
          : `  kept disk image ${d.path} (${humanSize(d.allocatedBytes)} allocated)\n`);
      }
    });
}

/** stop and restart: the same request shape, the same spinner. */
async function stopLike(method: 'vm.stop' | 'vm.restart', doing: string, name: string, o: { timeout?: string; force?: boolean; discardState?: boolean; json?: boolean }): Promise<VmInfo & { path: StopPath }> {
  const timeoutMs = durationOption(o.timeout, '--timeout');
  const c = await connectDaemon();
  // (No spinner after a question: discarding a state takes no time, and ora would fight readline
  // over the terminal.)
  const sp = spinner(doing, !o.json && !o.discardState);
  try {
    return await c.request<VmInfo & { path: StopPath }>(method, { name, ...(o.force ? { force: true } : {}), ...(o.discardState ? { discardState: true } : {}), ...(timeoutMs !== undefined ? { timeoutSeconds: timeoutMs / 1000 } : {}) });
  } finally {
    sp.stop();
    c.close();
  }
}

/** Asks on the terminal what to do with images that hold data: delete, keep, or (null) cancel. */
async function askAboutDisks(name: string, disks: readonly DiskInfo[]): Promise<'delete' | 'keep' | null> {
  process.stderr.write(`VM ${name} has ${disks.length === 1 ? 'a disk image' : 'disk images'} that vmctl created and that ${disks.length === 1 ? 'holds' : 'hold'} data:\n`);
  for (const d of disks) {
    process.stderr.write(`  ${d.path}  ${humanSize(d.allocatedBytes ?? 0)} allocated (${d.virtualBytes !== null ? formatSize(d.virtualBytes) : '?'} virtual)\n`);
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  let closed = false;
  rl.on('close', () => { closed = true; });
  try {
    const answer = await Promise.race([
      rl.question(`Delete ${disks.length === 1 ? 'it' : 'them'} with the VM? [y]es, delete / [k]eep / [N]o, cancel: `),
      new Promise<string>((resolve) => rl.once('close', () => resolve(''))),
    ]);
    const a = answer.trim().toLowerCase();
    if (a === 'y' || a === 'yes') return 'delete';
    if (a === 'k' || a === 'keep') return 'keep';
    if (closed) process.stderr.write('\n');
    return null;
  } finally {
    rl.close();
  }
}
