// vmctl's exit codes (stable; documented in the README).

import type { ErrorClass } from '../protocol/messages.js';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  unreachable: 3,
  noSuchVm: 4,
  wrongState: 5,
  timeout: 124,
} as const;

/** An error that ends the command with a given exit code; the message goes to stderr. */
export class CliError extends Error {
  /** `plain`: print the message as it is (FILE:LINE:COL lines), without the "vmctl:" prefix. */
  constructor(readonly exitCode: number, message: string, readonly plain = false) {
    super(message);
    this.name = 'CliError';
  }
}

export function exitCodeForClass(c: ErrorClass): number {
  switch (c) {
    case 'ConfigError':
    case 'InvalidParams':
      return EXIT.usage;
    case 'NoSuchVm':
    case 'NoSuchSnapshot':
      return EXIT.noSuchVm;
    case 'WrongState':
    case 'AlreadyExists': // the name is taken: the same answer as starting a running VM
    case 'InsufficientResources':
      return EXIT.wrongState;
    case 'ShuttingDown': // no daemon will serve it
      return EXIT.unreachable;
    case 'Timeout':
      return EXIT.timeout;
    default:
      return EXIT.failed;
  }
}
