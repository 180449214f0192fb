// Runs a long build (fixtures/linux/build.sh) for the test suite so that it is never silent: a
// quick run (a cached build) says nothing; once it has taken longer than `quietMs`, its stderr
// lines are shown as they come (the lines held so far first), and when no line came for
// `heartbeatMs` (another build holds the lock), a "still building" line says how long it has been.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface NarratedResult {
  /** The exit code, or null when the command could not be run or died of a signal. */
  readonly status: number | null;
  /** The last lines of its stderr, for a failure message. */
  readonly tail: readonly string[];
  readonly seconds: number;
}

export interface NarrationOptions {
  readonly quietMs: number;
  readonly heartbeatMs: number;
  /** Shown once the build proves long, before its lines. */
  readonly announce: string;
  /** Where lines go (the suite writes them to stderr, prefixed). */
  readonly say: (line: string) => void;
}

export function elapsedText(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

export async function runNarrated(cmd: string, args: readonly string[], o: NarrationOptions): Promise<NarratedResult> {
  const t0 = Date.now();
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const held: string[] = [];
  const tail: string[] = [];
  let streaming = false;
  let lastLine = Date.now();
  createInterface({ input: child.stderr! }).on('line', (line) => {
    tail.push(line);
    if (tail.length > 15) tail.shift();
    lastLine = Date.now();
    if (streaming) o.say(line);
    else held.push(line);
  });
  const quiet = setTimeout(() => {
    streaming = true;
    o.say(o.announce);
    for (const l of held.splice(0)) o.say(l);
  }, o.quietMs);
  const heartbeat = setInterval(() => {
    if (streaming && Date.now() - lastLine >= o.heartbeatMs) {
      o.say(`still building, ${elapsedText(Date.now() - t0)} so far (last: ${tail[tail.length - 1] ?? 'nothing yet'})`);
      lastLine = Date.now();
    }
  }, Math.max(10, o.heartbeatMs / 3));
  const status = await new Promise<number | null>((resolve) => {
    child.on('error', (e) => {
      tail.push(String(e));
      resolve(null);
    });
    child.on('close', (code) => resolve(code));
  });
  clearTimeout(quiet);
  clearInterval(heartbeat);
  return { status, tail, seconds: (Date.now() - t0) / 1000 };
}
