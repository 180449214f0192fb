// ssh: a shell (or one command) in the guest with the host's own OpenSSH client, through a
// forward to the guest's port 22 on 127.0.0.1 that the daemon sets up, with the key pair vmctl
// keeps in VMCTL_HOME/ssh (its public half reaches the guest in the device tree; see
// src/daemon/ssh-key.ts). The exit status is ssh's: the remote command's, or 255 for ssh's own
// failures (and when the guest's sshd never answered).

import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import type { Command } from 'commander';
import { durationOption } from '../cli-helpers.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { err, spinner } from '../output.js';

const DEFAULT_WAIT = '2m';
/** ssh's own exit status for a connection that failed (ssh(1)). */
export const SSH_FAILED = 255;

/** Whether an SSH server answers at host:port: its identification line (RFC 4253 4.2) arrives. */
function sshAnswers(host: string, port: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    let text = '';
    const done = (ok: boolean): void => { clearTimeout(t); s.destroy(); resolve(ok); };
    const t = setTimeout(() => done(false), ms);
    s.on('data', (b: Buffer) => { text += b.toString('latin1'); if (text.includes('SSH-')) done(true); });
    s.on('error', () => done(false));
    s.on('close', () => done(false));
  });
}

export function register(program: Command): void {
  program
    .command('ssh <NAME> [COMMAND...]')
    .description("open a shell in the VM (or run COMMAND) with the host's ssh client")
    .option('--timeout <DUR>', `how long to wait for the guest's ssh server to answer (default ${DEFAULT_WAIT})`)
    .addHelpText('after', `
Put -- before a command that has options: vmctl ssh NAME -- ls -l /
Logs in as root with the key pair in $VMCTL_HOME/ssh, through a forward to the guest's port 22
on 127.0.0.1 (vmctl port NAME shows it). Needs ssh (openssh-client) on the host, a NIC on a
user-mode network, and an ssh server in the guest that takes the key from the device tree (the
Linux test guest does). Exit status: the command's, or 255 for ssh's failures.`)
    .action(async (name: string, words: string[], o: { timeout?: string }) => {
      const waitText = o.timeout ?? DEFAULT_WAIT;
      const waitMs = durationOption(waitText, '--timeout')!;
      const c = await connectDaemon();
      const ep = await c.request<{ host: string; port: number; identityFile: string; user: string }>('vm.ssh', { name });
      c.close();
      // (Not on a terminal that reports no width: ora would redraw nothing but cursor moves.)
      const spin = spinner(`waiting for the ssh server of VM ${name} (127.0.0.1:${ep.port})`, (process.stderr.columns ?? 0) > 0);
      const deadline = Date.now() + waitMs;
      let up = false;
      while (!up && Date.now() < deadline) {
        up = await sshAnswers(ep.host, ep.port, Math.min(3000, Math.max(200, deadline - Date.now())));
        if (!up) await new Promise((r) => setTimeout(r, 300));
      }
      spin.stop();
      if (!up) {
        process.stderr.write(`${err.red('vmctl ssh:')} the ssh server of VM ${name} did not answer within ${waitText} (127.0.0.1:${ep.port} -> guest port 22)\n`);
        process.exitCode = SSH_FAILED;
        return;
      }
      // The guest makes new host keys at each boot: nothing to remember or verify them against
      // (the connection never leaves this host: 127.0.0.1, a forward vmctl bound).
      const args = [
        '-i', ep.identityFile, '-p', String(ep.port), '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
        '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
        `${ep.user}@${ep.host}`, ...(words.length > 0 ? ['--', ...words] : []),
      ];
      const code = await new Promise<number>((resolve, reject) => {
        const child = spawn('ssh', args, { stdio: 'inherit' });
        child.on('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT'
          ? new CliError(EXIT.failed, 'ssh: the OpenSSH client (ssh) is not installed on this host (Debian/Ubuntu: apt-get install openssh-client)')
          : e));
        child.on('exit', (code, signal) => resolve(code ?? (signal ? SSH_FAILED : 0)));
      });
      process.exitCode = code;
    });
}
