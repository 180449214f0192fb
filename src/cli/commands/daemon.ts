// daemon start | stop | status | run.

import type { Command } from 'commander';
import { humanDuration, humanSize } from '../../config/units.js';
import { AlreadyRunning, pidAlive, readPid, runDaemon } from '../../daemon/daemon.js';
import type { DaemonStatus } from '../../protocol/messages.js';
import { sleep } from '../cli-helpers.js';
import { cleanStalePid, currentHome, definitionWorkerBundle, startDaemon, tryConnect, workerBundle } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { printJson } from '../output.js';
import { VERSION } from '../version.js';

export function register(program: Command): void {
  const d = program.command('daemon').description('the background daemon that hosts VMs (one per VMCTL_HOME)');

  d.command('start')
    .description('start the daemon in the background (other commands do this by themselves)')
    .action(async () => {
      const p = currentHome();
      const c = await tryConnect(p);
      if (c) {
        const pid = c.greeting?.pid;
        c.close();
        process.stdout.write(`The daemon is already running (pid ${pid}, home ${p.home})\n`);
        return;
      }
      cleanStalePid(p);
      const c2 = await startDaemon(p);
      const pid = c2.greeting?.pid;
      c2.close();
      process.stdout.write(`Started the daemon (pid ${pid}, home ${p.home})\n`);
    });

  d.command('stop')
    .description('stop the daemon (running VMs are powered off)')
    .action(async () => {
      const p = currentHome();
      let c;
      try {
        c = await tryConnect(p);
      } catch (e) {
        // A daemon that does not answer (hung, or not greeting): fall back to SIGTERM, which runs
        // the same clean shutdown when its event loop is alive at all.
        const pid = readPid(p);
        if (pid === null || !pidAlive(pid)) throw e;
        process.stderr.write(`The daemon (pid ${pid}) does not answer; sending SIGTERM\n`);
        process.kill(pid, 'SIGTERM');
        await waitForExit(pid);
        process.stdout.write(`Stopped the daemon (pid ${pid})\n`);
        return;
      }
      if (!c) {
        cleanStalePid(p);
        process.stdout.write(`The daemon is not running (home ${p.home})\n`);
        return;
      }
      const pid = c.greeting?.pid ?? 0;
      await c.request('daemon.shutdown');
      c.close();
      await waitForExit(pid);
      process.stdout.write(`Stopped the daemon (pid ${pid})\n`);
    });

  d.command('status')
    .description('is the daemon running? (exit 3 when not)')
    .option('--json', 'print a JSON object')
    .action(async (o: { json?: boolean }) => {
      const p = currentHome();
      const c = await tryConnect(p);
      if (!c) {
        if (o.json) printJson({ running: false, home: p.home });
        else process.stdout.write(`The daemon is not running (home ${p.home})\n`);
        process.exitCode = EXIT.unreachable;
        return;
      }
      const s = await c.request<DaemonStatus>('daemon.status');
      c.close();
      if (o.json) return printJson({ running: true, ...s });
      process.stdout.write(`The daemon is running: pid ${s.pid}, vmd ${s.version}, protocol ${s.protocol}, up ${humanDuration(s.uptimeSeconds)}\n` +
        `home ${s.home}\nsocket ${s.socket}\n${s.vms} VM${s.vms === 1 ? '' : 's'}, ${s.runningVms} running\n` +
        `memory ${humanSize(s.memory.rss)} resident (JavaScript heap ${humanSize(s.memory.heapUsed)} used of ${humanSize(s.memory.heapTotal)})\n`);
    });

  d.command('run')
    .description('run the daemon in the foreground')
    .action(async () => {
      const p = currentHome();
      const detached = process.env.VMCTL_DAEMON_DETACHED === '1';
      try {
        await runDaemon({ home: p.home, workerPath: workerBundle, definitionWorkerPath: definitionWorkerBundle, version: VERSION, echoToStderr: !detached });
      } catch (e) {
        if (e instanceof AlreadyRunning) throw new CliError(EXIT.failed, e.message);
        throw e;
      }
    });
}

async function waitForExit(pid: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (pidAlive(pid) && Date.now() < deadline) await sleep(50);
  if (pidAlive(pid)) throw new CliError(EXIT.failed, `the daemon (pid ${pid}) did not exit within 15 s`);
}
