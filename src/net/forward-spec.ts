// How a user writes a port forward's host side: "2222", "127.0.0.1:2222", "0.0.0.0:8080"; and
// on the command line the whole forward: "[ADDRESS:]HOSTPORT:GUESTPORT".

import { isIPv4 } from 'node:net';

export const DEFAULT_FORWARD_ADDRESS = '127.0.0.1';

/** "[ADDRESS:]PORT" -> address and port (0 = any free port), or a message saying what is wrong. */
export function parseHostEndpoint(text: string): { address: string; port: number } | string {
  const m = /^(?:(.*):)?(\d{1,5})$/.exec(text.trim());
  if (!m) return `${JSON.stringify(text)} is not [ADDRESS:]PORT (e.g. 2222 or 0.0.0.0:8080)`;
  const port = Number(m[2]);
  if (port > 65535) return `port ${port} is out of range; expected 0..65535 (0: any free port)`;
  const address = m[1] ?? DEFAULT_FORWARD_ADDRESS;
  if (!isIPv4(address)) return `${JSON.stringify(address)} is not an IPv4 address (forwards listen on IPv4, e.g. 127.0.0.1 or 0.0.0.0)`;
  return { address, port };
}

/** A guest port: 1..65535. */
export function guestPortProblem(port: number): string | null {
  return Number.isInteger(port) && port >= 1 && port <= 65535 ? null : `guest port ${port} is out of range; expected 1..65535`;
}

/** "[ADDRESS:]HOSTPORT:GUESTPORT" (the command line's form). */
export function parseForwardArg(text: string): { address: string; hostPort: number; guestPort: number } | string {
  const i = text.lastIndexOf(':');
  if (i < 0) return `${JSON.stringify(text)} is not [ADDRESS:]HOSTPORT:GUESTPORT (e.g. 8080:80 or 0.0.0.0:2222:22)`;
  const host = parseHostEndpoint(text.slice(0, i));
  if (typeof host === 'string') return host;
  const g = text.slice(i + 1);
  const guestPort = /^\d{1,5}$/.test(g) ? Number(g) : Number.NaN;
  const p = guestPortProblem(guestPort);
  if (p) return /^\d{1,5}$/.test(g) ? p : `${JSON.stringify(g)} is not a guest port; expected 1..65535`;
  return { address: host.address, hostPort: host.port, guestPort };
}
