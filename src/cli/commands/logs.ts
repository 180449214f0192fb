// logs: the VM's serial log (serial.log and serial.index in its folder), whole or by boot, time
// and lines, optionally followed. Piped, the guest's bytes exactly; on a terminal, made safe for it
// (terminal-safe.ts) with a dim line where each boot starts.

import type { Command } from 'commander';
import { parseDuration } from '../../config/units.js';
import type { ProtocolClient } from '../../protocol/client.js';
import type { EventMessage } from '../../protocol/messages.js';
import { unb64, writeHeld } from '../cli-helpers.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { err, out } from '../output.js';
import { TerminalSafeFilter } from '../terminal-safe.js';

interface LogReply {
  data: string;
  boots: { bootId: number; startedAt: string; offset: number }[];
  omittedBytes: number;
  bootId: number;
}

export function register(program: Command): void {
  program
    .command('logs <NAME>')
    .description("print the VM's serial log (all boots kept, oldest first)")
    .option('--boot <N>', 'only boot N (its id, as in `vmctl info`), or counted back from the newest: -1, -2, ...')
    .option('--since <DUR|TIME>', 'only output written since then: 10m, 2h, or a local time like 2025-12-07T10:00, 10:00')
    .option('--tail <N>', 'only the last N lines (of what the other options select)')
    .option('-f, --follow', 'then keep printing new output, of this boot and the next ones, until interrupted (with --boot: the newest)')
    .option('--raw', 'on a terminal too, write the bytes as they are (escape sequences included)')
    .addHelpText('after', `
Piped or redirected, logs writes the guest's bytes exactly as it sent them. On a terminal, control
sequences that would make your terminal answer or change its state (cursor reports such as ESC[6n,
titles, modes) are shown as text (^[[6n); colours stay. Each boot starts with a dim "-- boot N --"
line there. Times are exact to about 10 seconds (serial.index marks when output was written).`)
    .action(async (name: string, o: { boot?: string; since?: string; tail?: string; follow?: boolean; raw?: boolean }) => {
      const boot = o.boot !== undefined ? bootOption(o.boot) : undefined;
      const tail = o.tail !== undefined ? countOption(o.tail, '--tail') : undefined;
      const since = o.since !== undefined ? sinceOption(o.since) : undefined;
      const printer = new LogPrinter(process.stdout.isTTY === true && !o.raw);
      // With -f, Ctrl-C ends logs with 0. Listen from the start: a Ctrl-C that arrives while the
      // log so far is printed (before following begins) would otherwise kill it with 130.
      const interrupted = o.follow ? new Promise<number>((resolve) => process.once('SIGINT', () => resolve(EXIT.ok))) : null;
      const c = await connectDaemon();
      const r = await c.request<LogReply>('vm.log', {
        name,
        ...(o.follow ? { follow: true } : {}),
        ...(boot !== undefined ? { boot } : {}),
        ...(since !== undefined ? { since: new Date(since).toISOString() } : {}),
        ...(tail !== undefined ? { tail } : {}),
      });
      if (r.omittedBytes > 0) {
        process.stderr.write(`${err.yellow('note:')} the first ${r.omittedBytes} bytes of what was asked for are left out (one reply holds at most 64 MiB); narrow it with --boot, --since or --tail, or read the VM's serial.log\n`);
      }
      printer.print(unb64(r.data), r.boots);
      if (!o.follow) {
        printer.end();
        c.close();
        return;
      }
      const code = await follow(c, name, printer, interrupted!);
      printer.end();
      c.close();
      process.exitCode = code;
    });
}

/** Prints new output until the VM is deleted (exit 4, saying so), the daemon goes away, or Ctrl-C. */
async function follow(c: ProtocolClient, name: string, printer: LogPrinter, interrupted: Promise<number>): Promise<number> {
  c.onEvent((e: EventMessage) => {
    if (e.vm !== name) return;
    const bootId = e.data.bootId as number | undefined;
    // A new boot's first event: its start (state "starting"), or output if that was missed.
    if (bootId !== undefined && (e.event === 'console' || (e.event === 'state' && e.data.state === 'starting'))) printer.boot(bootId, e.timestamp);
    if (e.event === 'console') printer.write(c, unb64(e.data.data as string));
  });
  return new Promise<number>((resolve) => {
    c.onEvent((e) => {
      if (e.vm === name && e.event === 'deleted') {
        process.stderr.write(`VM ${name} was deleted; its log is gone\n`);
        resolve(EXIT.noSuchVm);
      }
    });
    c.onClose(() => resolve(EXIT.unreachable));
    void interrupted.then(resolve);
  });
}

/** Writes log output: as it is, or through the terminal filter with boot separators. */
class LogPrinter {
  private readonly filter: TerminalSafeFilter | null;
  private currentBoot: number | null = null;
  /** Did the guest's output so far end a line (a separator must start on a line of its own)? */
  private atLineStart = true;

  constructor(private readonly tty: boolean) {
    this.filter = tty ? new TerminalSafeFilter() : null;
  }

  /** The reply to vm.log: data, with where each boot in it starts. */
  print(data: Buffer, boots: LogReply['boots']): void {
    let at = 0;
    for (const b of [...boots].sort((x, y) => x.offset - y.offset)) {
      if (b.offset < 0) {
        this.currentBoot = b.bootId; // the data begins in this boot
        continue;
      }
      process.stdout.write(this.render(data.subarray(at, b.offset)));
      at = b.offset;
      this.boot(b.bootId, b.startedAt);
    }
    process.stdout.write(this.render(data.subarray(at)));
  }

  /** Output of boot `bootId` follows: on a terminal, a separator when it is a new one. */
  boot(bootId: number, startedAt: string): void {
    if (this.currentBoot === bootId) return;
    this.currentBoot = bootId;
    if (!this.tty) return;
    const pending = this.filter!.flush(); // a sequence cut off by the reboot, and colours reset
    process.stdout.write(pending);
    const nl = this.atLineStart ? '' : '\n';
    process.stdout.write(`${nl}${out.dim(`-- boot ${bootId}, started ${localTime(startedAt)} --`)}\n`);
    this.atLineStart = true;
  }

  /** Followed output. */
  write(c: ProtocolClient, bytes: Buffer): void {
    writeHeld(c, this.render(bytes));
  }

  end(): void {
    if (this.filter) process.stdout.write(this.filter.flush());
  }

  /** What to write for guest output: the bytes, or on a terminal what the filter makes of them. */
  private render(bytes: Buffer): Buffer {
    if (bytes.length > 0) this.atLineStart = bytes[bytes.length - 1] === 0x0a;
    return this.filter ? this.filter.push(bytes) : bytes;
  }
}

function localTime(iso: string): string {
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function bootOption(text: string): number {
  const n = /^-?\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n === 0) {
    throw new CliError(EXIT.usage, `--boot: ${JSON.stringify(text)} is not a boot; expected a boot id (1, 2, ... as \`vmctl info\` shows) or -1 for the newest, -2 for the one before, ...`);
  }
  return n;
}

function countOption(text: string, option: string): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new CliError(EXIT.usage, `${option}: ${JSON.stringify(text)} is not a number of lines; expected 0 or more, like 20`);
  return n;
}

/** --since: a duration back from now (10m, 1h30m) or a local date/time. Returns ms since the epoch. */
export function sinceOption(text: string, now = Date.now()): number {
  const s = text.trim();
  const fail = (): never => {
    throw new CliError(EXIT.usage, `--since: ${JSON.stringify(text)} is neither a duration (like 10m or 2h) nor a time (like 2025-12-07T10:00, 2025-12-07 10:00:30, 10:00 or 2025-12-07)`);
  };
  let m = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[+-]\d{2}:?\d{2})?)?$/.exec(s);
  if (m) {
    // A date alone is local midnight (Date.parse would take it as UTC).
    const t = Date.parse(`${m[1]}T${m[2] ? m[2].replace(/^(\d):/, '0$1:') : '00:00'}${m[3] ?? ''}`);
    return Number.isNaN(t) ? fail() : t;
  }
  m = /^(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(s);
  if (m) {
    // A time of day: today, local time.
    const d = new Date(now);
    d.setHours(Number(m[1]), Number(m[2]), Number(m[3] ?? 0), 0);
    return Number(m[1]) < 24 && Number(m[2]) < 60 && Number(m[3] ?? 0) < 60 ? d.getTime() : fail();
  }
  // A duration needs its unit here: "5" could be minutes as well as seconds.
  const ms = /[a-z]$/i.test(s) ? parseDuration(s) : null;
  return ms === null ? fail() : now - ms;
}
