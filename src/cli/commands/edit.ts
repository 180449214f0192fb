// edit: a VM's definition in $VISUAL / $EDITOR (as `virsh edit`, `kubectl edit`), validated on
// save; a definition that does not validate is opened again with the problems on top.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ConfigErrors, MAX_LISTED_ERRORS } from '../../config/errors.js';
import { parseVmDefinition, serializeVmDefinition } from '../../config/vm-definition.js';
import { ProtocolFailure, type VmInfo, type VmState } from '../../protocol/messages.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { err, out } from '../output.js';

const HEADER_FIRST = '# vmctl edit: this definition does not validate, so it was not saved.';
const HEADER_END = '#';

/** The editor command, as git and kubectl pick it. */
function editorCommand(): string {
  return process.env.VISUAL || process.env.EDITOR || 'vi';
}

/** The text without the problems block a previous round put on top. */
function withoutHeader(text: string): string {
  if (!text.startsWith(HEADER_FIRST)) return text;
  const lines = text.split('\n');
  const end = lines.indexOf(HEADER_END);
  return end < 0 ? text : lines.slice(end + 1).join('\n');
}

/** The problems, one a line; positions are moved down by the lines of the header they go in, so
 *  each FILE:LINE:COL points where the problem is in the file the editor shows. */
function problemLines(shownName: string, problems: ConfigErrors | string): string[] {
  if (typeof problems === 'string') return problems.split('\n');
  const listed = problems.errors.slice(0, MAX_LISTED_ERRORS);
  const more = problems.errors.length - listed.length;
  const shift = listed.length + (more > 0 ? 1 : 0) + 3; // the lines withHeader puts above the body
  const lines = listed.map((e) => `${shownName}:${e.pos.line + shift}:${e.pos.col}: ${e.detail.replace(/\n/g, ' ')}`);
  if (more > 0) lines.push(`… and ${more} more problems`);
  return lines;
}

function withHeader(body: string, problems: readonly string[]): string {
  const lines = [HEADER_FIRST, '# Fix what is listed below and save, or quit without saving to cancel.', ...problems.map((l) => `# ${l}`), HEADER_END];
  return `${lines.join('\n')}\n${body}`;
}

export function register(program: Command): void {
  program
    .command('edit <NAME>')
    .description('edit a VM\'s definition in $VISUAL/$EDITOR; validated on save (a running VM gets it at its next start)')
    .action(async (name: string) => {
      const c = await connectDaemon();
      const { text: original } = await c.request<{ text: string; state: VmState }>('vm.definition', { name });
      const dir = mkdtempSync(join(tmpdir(), 'vmctl-edit-'));
      const file = join(dir, `${name}.yaml`);
      let keep = false;
      try {
        let shown = original;
        let problems: string[] = [];
        for (;;) {
          writeFileSync(file, shown, { mode: 0o600 });
          // As git does: the editor setting may hold arguments ("code --wait").
          const ed = spawnSync('/bin/sh', ['-c', `${editorCommand()} "$1"`, 'sh', file], { stdio: 'inherit' });
          if (ed.error || ed.status !== 0) {
            throw new CliError(EXIT.failed, `the editor (${editorCommand()}) ${ed.error ? `could not run: ${ed.error.message}` : `exited with ${ed.status === null ? `signal ${ed.signal}` : `code ${ed.status}`}`}; nothing was saved`);
          }
          const edited = readFileSync(file, 'utf8');
          const body = withoutHeader(edited);
          if (edited === shown) {
            if (shown === original) {
              process.stdout.write(`Edit cancelled, no changes made to VM ${out.bold(name)}\n`);
              return;
            }
            // Quit without saving after being shown problems: nothing is saved, the problems stand.
            throw new CliError(EXIT.usage, `edit cancelled: the edited definition of VM ${name} does not validate, so nothing was saved:\n${problems.join('\n')}`);
          }
          let text: string;
          try {
            // Relative paths typed in the editor are relative to where vmctl edit runs.
            text = serializeVmDefinition(parseVmDefinition(body, file, process.cwd(), { keepName: name }));
          } catch (e) {
            if (!(e instanceof ConfigErrors)) throw e;
            problems = problemLines(`${name}.yaml`, e);
            shown = withHeader(body, problems);
            continue;
          }
          let saved: VmInfo & { applies: 'now' | 'next-start'; warnings: string[] };
          try {
            saved = await c.request('vm.redefine', { name, file, text, base: original });
          } catch (e) {
            if (e instanceof ProtocolFailure && e.errorClass === 'ConfigError') {
              problems = problemLines(`${name}.yaml`, `the daemon refused it: ${e.message}`);
              shown = withHeader(body, problems);
              continue;
            }
            if (e instanceof ProtocolFailure && e.errorClass === 'WrongState') {
              keep = true;
              throw new CliError(EXIT.wrongState, `${e.message}; your version is in ${file}`);
            }
            throw e;
          }
          for (const w of saved.warnings) process.stderr.write(`${err.yellow('warning:')} ${w}\n`);
          process.stdout.write(saved.applies === 'now'
            ? `Saved the definition of VM ${out.bold(name)}\n`
            : `Saved the definition of VM ${out.bold(name)}; it is ${saved.state}, so the changes apply at its next start (a guest reboot keeps the running definition)\n`);
          return;
        }
      } finally {
        c.close();
        if (!keep) rmSync(dir, { recursive: true, force: true });
      }
    });
}
