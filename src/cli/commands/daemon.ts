// daemon start | stop | status | run.

import type { Command } from 'commander';
import { humanDuration, humanSize } from '../../config/units.js';
import { AlreadyRunning, pidAlive, readPid, runDaemon } from '../../daemon/daemon.js';
import type { DaemonStatus, StopReport } from '../../protocol/messages.js';
import { durationOption, sleep, stopText } from '../cli-helpers.js';
import { cleanStalePid, currentHome, definitionWorkerBundle, startDaemon, tryConnect, warnIfForeign, workerBundle } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { printJson, spinner } from '../output.js';
import { VERSION } from '../version.js';

export function register(program: Command): void {
  const d = program.command('daemon').description('the background daemon that hosts VMs (one per VMCTL_HOME)');

  d.command('start')
    .description('start the daemon in the background (other commands do this by themselves)')
    .action(async () => {
      const p = currentHome();
      const c = await tryConnect(p);
      if (c) {
        warnIfForeign(c, p.home);
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
    .description('stop the daemon: running VMs are stopped as vmctl stop does (shutdown.console, then power-off after the timeout)')
    .option('--force', 'power running VMs off at once')
    .option('--timeout <DUR>', 'how long to wait for each guest after typing its shutdown.console (default: each VM file\'s shutdown.timeout, else 30s; 0 = no limit)')
    .option('--json', 'print {pid, stopped: [{name, path}]}')
    .action(async (o: { force?: boolean; timeout?: string; json?: boolean }) => {
      const timeoutMs = durationOption(o.timeout, '--timeout');
      const p = currentHome();
      let c;
      try {
        c = await tryConnect(p);
      } catch (e) {
        // A daemon that does not answer (hung, or not greeting): fall back to SIGTERM, which runs
        // the same clean shutdown when its event loop is alive at all.
        const pid = readPid(p);
        if (pid === null || !pidAlive(pid)) throw e;
        // A second signal powers off the VMs still waiting for their guests (--force).
        process.stderr.write(`The daemon (pid ${pid}) does not answer; sending SIGTERM${o.force ? ' twice' : ''}\n`);
        process.kill(pid, 'SIGTERM');
        if (o.force) {
          await sleep(200); // signals of one kind do not queue: let the first be taken
          process.kill(pid, 'SIGTERM');
        }
        await waitForExit(pid);
        process.stdout.write(`Stopped the daemon (pid ${pid})\n`);
        return;
      }
      if (!c) {
        cleanStalePid(p);
        if (o.json) printJson({ pid: null, stopped: [] });
        else process.stdout.write(`The daemon is not running (home ${p.home})\n`);
        return;
      }
      const pid = c.greeting?.pid ?? 0;
      const sp = spinner('stopping the running VMs', !o.json);
      let r: { stopped: StopReport[] };
      try {
        r = await c.request<{ stopped: StopReport[] }>('daemon.shutdown', { ...(o.force ? { force: true } : {}), ...(timeoutMs !== undefined ? { timeoutSeconds: timeoutMs / 1000 } : {}) });
      } finally {
        sp.stop();
        c.close();
      }
      await waitForExit(pid);
      if (o.json) return printJson({ pid, ...r });
      for (const v of r.stopped) process.stdout.write(`${stopText(v.name, v.path, 'stopped')}\n`);
      process.stdout.write(`Stopped the daemon (pid ${pid}${r.stopped.length === 0 ? ', no VM was running' : ''})\n`);
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
      warnIfForeign(c, p.home);
      const s = await c.request<DaemonStatus>('daemon.status');
      c.close();
      if (o.json) return printJson({ running: true, ...s });
      process.stdout.write(`The daemon is running: pid ${s.pid}, vmd ${s.version}, protocol ${s.protocol}, up ${humanDuration(s.uptimeSeconds)}\n` +
        `home ${s.home}\nsocket ${s.socket}\ncode ${s.install} (Node ${s.node})\n${s.vms} VM${s.vms === 1 ? '' : 's'}, ${s.runningVms} running\n` +
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
        if (e instanceof AlreadyRunning) throw new CliError(EXIT.wrongState, e.message);
        throw e;
      }
    });
}

async function waitForExit(pid: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (pidAlive(pid) && Date.now() < deadline) await sleep(50);
  if (pidAlive(pid)) throw new CliError(EXIT.failed, `the daemon (pid ${pid}) did not exit within 15 s`);
}
