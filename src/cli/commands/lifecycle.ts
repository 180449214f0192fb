// create, start, stop, pause, resume, delete.

import type { Command } from 'commander';
import { humanSize } from '../../config/units.js';
import type { EventMessage, VmInfo } from '../../protocol/messages.js';
import { durationOption, isDeletion, loadDefinitionOrExit, unb64 } from '../cli-helpers.js';
import { compilePattern, ConsoleText } from '../console-match.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { err, out, printJson, spinner, stateColor } from '../output.js';

export function register(program: Command): void {
  program
    .command('create')
    .description('register a VM from a YAML file (state: stopped)')
    .requiredOption('-f, --file <FILE>', 'VM definition (see vm-config.example.yaml)')
    .option('--name <NAME>', 'use this name instead of the file\'s name:')
    .option('--json', 'print the new VM as JSON')
    .action(async (o: { file: string; name?: string; json?: boolean }) => {
      const { abs, text } = loadDefinitionOrExit(o.file, o.name);
      const c = await connectDaemon();
      const info = await c.request<VmInfo & { warnings: string[] }>('vm.create', { file: abs, text, ...(o.name ? { name: o.name } : {}) });
      c.close();
      for (const w of info.warnings ?? []) process.stderr.write(`${err.yellow('warning:')} ${w}\n`);
      if (o.json) printJson(info);
      else process.stdout.write(`Created VM ${out.bold(info.name)} (${info.cpus} cpu, ${humanSize(info.memoryBytes)}), state ${stateColor(info.state)}\n`);
    });

  program
    .command('start <NAME>')
    .description('boot a VM')
    .option('--wait-for <REGEX>', 'return once console output of this boot matches')
    .option('--timeout <DUR>', 'give up after this long (exit 124): waiting for the machine to start, and for --wait-for')
    .option('--json', 'print the VM as JSON')
    .action(async (name: string, o: { waitFor?: string; timeout?: string; json?: boolean }) => {
      const timeoutMs = durationOption(o.timeout, '--timeout');
      const re = o.waitFor !== undefined ? compilePattern(o.waitFor, '--wait-for') : null;
      const c = await connectDaemon();
      if (!re) {
        const sp = spinner(`starting ${name}`, !o.json);
        let info: VmInfo;
        let timer: NodeJS.Timeout | undefined;
        try {
          const started = c.request<VmInfo>('vm.start', { name });
          info = timeoutMs === undefined ? await started : await Promise.race([started, new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new CliError(EXIT.timeout, `timed out after ${o.timeout} waiting for VM ${name} to start`)), timeoutMs);
          })]);
        } finally {
          clearTimeout(timer);
          sp.stop();
        }
        c.close();
        if (o.json) printJson(info);
        else process.stdout.write(`Started VM ${out.bold(name)}, state ${stateColor(info.state)}\n`);
        return;
      }
      // Subscribe before starting so no output of the new boot is missed; the new boot's id is
      // one more than the current one.
      const sub = await c.request<{ bootId: number }>('vm.subscribe', { name, console: true });
      const text = new ConsoleText();
      const sp = spinner(`starting ${name}, waiting for /${o.waitFor}/`, !o.json);
      const result = await new Promise<{ code: number; message: string }>((resolve, reject) => {
        const timer = timeoutMs !== undefined ? setTimeout(() => resolve({ code: EXIT.timeout, message: `timed out after ${o.timeout} waiting for /${o.waitFor}/` }), timeoutMs) : null;
        const finish = (r: { code: number; message: string }) => {
          if (timer) clearTimeout(timer);
          resolve(r);
        };
        c.onEvent((e: EventMessage) => {
          if (e.vm !== name) return;
          const bootId = e.data.bootId as number | undefined;
          if (isDeletion(e)) {
            finish({ code: EXIT.noSuchVm, message: `VM ${name} was deleted before its console matched /${o.waitFor}/` });
            return;
          }
          if (bootId !== undefined && bootId <= sub.bootId) return;
          if (e.event === 'console') {
            text.push(unb64(e.data.data as string));
            if (text.test(re)) finish({ code: EXIT.ok, message: `VM ${name} is up: console matched /${o.waitFor}/` });
          } else if (e.event === 'state' && (e.data.state === 'stopped' || e.data.state === 'aborted')) {
            finish({ code: EXIT.failed, message: `VM ${name} stopped (${String(e.data.state)}) before the console matched /${o.waitFor}/` });
          }
        });
        c.onClose(() => finish({ code: EXIT.unreachable, message: 'the daemon closed the connection' }));
        c.request<VmInfo>('vm.start', { name }).catch((e) => {
          if (timer) clearTimeout(timer);
          reject(e);
        });
      }).finally(() => sp.stop());
      c.close();
      if (result.code !== EXIT.ok) throw new CliError(result.code, result.message);
      if (o.json) printJson({ name, matched: true });
      else process.stdout.write(`${result.message}\n`);
    });

  program
    .command('stop <NAME>')
    .description('stop a VM: type shutdown.console and wait for the guest, or power off')
    .option('--timeout <DUR>', 'how long to wait for the guest after typing shutdown.console (default 30s)')
    .option('--force', 'power off at once')
    .option('--json', 'print the result as JSON')
    .action(async (name: string, o: { timeout?: string; force?: boolean; json?: boolean }) => {
      const timeoutMs = durationOption(o.timeout, '--timeout');
      const c = await connectDaemon();
      const sp = spinner(`stopping ${name}`, !o.json);
      let r: VmInfo & { path: string };
      try {
        r = await c.request<VmInfo & { path: string }>('vm.stop', { name, ...(o.force ? { force: true } : {}), ...(timeoutMs !== undefined ? { timeoutSeconds: timeoutMs / 1000 } : {}) });
      } finally {
        sp.stop();
      }
      c.close();
      if (o.json) {
        printJson(r);
        return;
      }
      const how: Record<string, string> = {
        'already-stopped': `VM ${name} was not running (state ${r.state})`,
        'guest-poweroff': `Typed the shutdown command; VM ${name} powered off by itself`,
        'timeout-poweroff': `VM ${name} did not power off in time after the shutdown command; powered off`,
        'poweroff': `Powered off VM ${name}`,
      };
      process.stdout.write(`${how[r.path] ?? r.path}\n`);
    });

  for (const [verb, method, done] of [['pause', 'vm.pause', 'Paused'], ['resume', 'vm.resume', 'Resumed']] as const) {
    program
      .command(`${verb} <NAME>`)
      .description(verb === 'pause' ? 'freeze a running VM (its clock stands still)' : 'continue a paused VM')
      .option('--json', 'print the VM as JSON')
      .action(async (name: string, o: { json?: boolean }) => {
        const c = await connectDaemon();
        const info = await c.request<VmInfo>(method, { name });
        c.close();
        if (o.json) printJson(info);
        else process.stdout.write(`${done} VM ${name}, state ${stateColor(info.state)}\n`);
      });
  }

  program
    .command('delete <NAME>')
    .description('remove a VM and the disk images vmctl created for it')
    .option('--force', 'power off a running VM first')
    .action(async (name: string, o: { force?: boolean }) => {
      const c = await connectDaemon();
      await c.request('vm.delete', { name, ...(o.force ? { force: true } : {}) });
      c.close();
      process.stdout.write(`Deleted VM ${name}\n`);
    });
}
