// Daemon settings: VMCTL_HOME/config.yaml. Every key is optional and declared once below (see
// src/config/schema.ts): validation, defaults, the file written on first start, the JSON Schema
// (`vmctl schema config`) and the README's table come from the declaration.

import { existsSync } from 'node:fs';
import { ConfigErrors } from './errors.js';
import { readYamlFile, SchemaReader } from './yaml-schema.js';
import { boolean, dict, number, object, readDocument, ReadContext, size, string, type ObjectValue } from './schema.js';
import { NETWORK_NAME_RE } from './vm-schema.js';
import { parseIp } from '../net/packet.js';
import { hostCpus } from './host-cpus.js';
import { annotatedYaml } from './schema-docs.js';

export interface DaemonSettings {
  /** serial.log is rotated to serial.log.1 when it grows past this. */
  readonly serialLogMaxBytes: number;
  /** The daemon's vmd.log is rotated to vmd.log.1 when it grows past this. */
  readonly daemonLogMaxBytes: number;
  /** Console output of the current boot kept in memory for `wait --for-console` / `start --wait-for`. */
  readonly consoleHistoryBytes: number;
  /** Switch networks' own settings by name (a name not here gets SWITCH_DEFAULTS). */
  readonly networks: ReadonlyMap<string, SwitchSettings>;
  /** Host cores vmctl may use for all VMs' harts (host.cpus; may be a fraction by default). */
  readonly hostCpus: number;
  /** Host memory vmctl may use for guests; undefined: what this process may use (hostMemoryBytes). */
  readonly hostMemoryBytes: number | undefined;
  /** Running VMs may be configured with up to hostMemory × this in all. */
  readonly overcommit: number;
  /** The daemon's balloon policy (src/daemon/balloon-policy.ts). */
  readonly autoBalloon: boolean;
}

export interface SwitchSettings {
  /** Network address and prefix length. */
  readonly network: number;
  readonly prefix: number;
  /** Route the network out like user-mode NAT (gateway, DNS, host sockets). */
  readonly nat: boolean;
}

/** A switch network that config.yaml does not describe: 10.0.3.0/24, no way out. */
export const SWITCH_DEFAULTS: SwitchSettings = { network: parseIp('10.0.3.0')!, prefix: 24, nat: false };
/** The gateway is .2 and DNS .3 (as slirp), DHCP hands out from .15: a /27 is the smallest. */
const MIN_PREFIX = 8;
const MAX_PREFIX = 27;

const MiB = 1024 * 1024;

export const SETTINGS_SCHEMA = object({
  serialLogMaxSize: size({ min: 4096, default: 4 * MiB, example: '4MiB', description: 'Size at which a VM\'s serial.log is rotated to serial.log.1' }),
  daemonLogMaxSize: size({ min: 4096, default: 4 * MiB, example: '4MiB', description: 'Size at which the daemon\'s vmd.log is rotated to vmd.log.1' }),
  consoleHistorySize: size({ min: 4096, default: 1 * MiB, example: '1MiB', description: 'Console output of the current boot kept in memory (wait --for-console, start --wait-for)' }),
  networks: dict(object({
    subnet: string({
      pattern: /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, expectedText: 'an IPv4 network like 10.0.3.0/24', default: '10.0.3.0/24', example: '10.0.3.0/24',
      description: 'The network\'s addresses: the daemon is .2 (gateway) and .3 (DNS, with nat), DHCP hands out from .15',
    }),
    nat: boolean({ default: false, example: false, description: 'Route the network out like user-mode NAT (to the host as .2 and beyond); false: the VMs on it reach each other only' }),
  }, { description: 'A switch network' }), {
    keyPattern: NETWORK_NAME_RE, keyText: 'a network name (letters, digits, ".", "_" or "-", 1..63)', keyName: 'NAME',
    default: () => new Map(), defaultText: 'none: every switch network gets 10.0.3.0/24, nat: false', nullIsAbsent: true,
    example: { lab: { subnet: '10.0.3.0/24', nat: false }, dmz: { subnet: '10.0.4.0/24', nat: true } },
    description: 'Switch networks (VM NICs with mode: switch, name: NAME) and their settings',
  }),
  host: object({
    cpus: number({
      min: 0.01, max: 1024, example: 2, defaultText: 'the cores this process may use',
      description: 'Host cores vmctl may use for the harts of all VMs together (fractions allowed, as 0.5)',
      details: ['Default: the cores this process may use, honouring a cgroup CPU limit (a container\'s --cpus). When more harts want to run, the daemon shares these cores among VMs by their cpus.shares and caps.'],
    }),
    memory: size({
      min: 64 * MiB, example: '16GiB', defaultText: 'the cgroup memory limit, else physical memory',
      description: 'Host memory vmctl may use for guests: start is refused past memory × overcommit, and VMs wait for memory past it',
    }),
    overcommit: number({
      min: 1, max: 100, default: 1.5, example: 1.5,
      description: 'How much more memory running VMs may be configured with, in all, than host.memory',
    }),
    autoBalloon: boolean({
      default: true, example: true,
      description: 'When the VMs\' resident memory nears host.memory, inflate the balloons of the VMs with the most free memory (never below memory.min), and deflate them when it is gone',
    }),
  }, { nullIsAbsent: true, description: 'What vmctl may use of the host: its cores, and its memory and how vmctl shares it between VMs' }),
}, { description: 'vmctl daemon settings (VMCTL_HOME/config.yaml); every key is optional' });

type SettingsFile = ObjectValue<typeof SETTINGS_SCHEMA.fields>;
function toSettings(v: SettingsFile, ctx: ReadContext): DaemonSettings {
  const networks = new Map<string, SwitchSettings>();
  for (const [name, n] of v.networks) {
    const path = `networks.${name}.subnet`;
    const [addr, bits] = n.subnet.split('/');
    const ip = parseIp(addr);
    const prefix = Number(bits);
    const pair = ctx.at.get(path);
    const fail = (m: string): void => { ctx.r.fail(pair?.value, `${path}: ${m}`, pair?.key); };
    if (ip === null) fail(`${JSON.stringify(addr)} is not an IPv4 address`);
    else if (prefix < MIN_PREFIX || prefix > MAX_PREFIX) fail(`prefix /${prefix} is out of range; expected /${MIN_PREFIX} to /${MAX_PREFIX} (room for the gateway, DNS and DHCP addresses)`);
    else {
      const mask = (~0 << (32 - prefix)) >>> 0;
      const net = (ip & mask) >>> 0;
      if (net !== ip) fail(`${n.subnet} has host bits set; expected the network address ${[net >>> 24, (net >>> 16) & 255, (net >>> 8) & 255, net & 255].join('.')}/${prefix}`);
      else networks.set(name, { network: net, prefix, nat: n.nat });
    }
  }
  return {
    serialLogMaxBytes: v.serialLogMaxSize, daemonLogMaxBytes: v.daemonLogMaxSize, consoleHistoryBytes: v.consoleHistorySize, networks,
    hostCpus: v.host.cpus ?? hostCpus(),
    hostMemoryBytes: v.host.memory, overcommit: v.host.overcommit, autoBalloon: v.host.autoBalloon,
  };
}

/** Reads config.yaml text; an empty file means every default. Throws ConfigErrors. */
export function parseDaemonSettings(text: string, file: string): DaemonSettings {
  const r = new SchemaReader(file, text);
  if (r.errors.length > 0) throw new ConfigErrors(r.errors);
  const ctx = new ReadContext(r, '/');
  const v = readDocument(SETTINGS_SCHEMA, ctx, true);
  if (!v || r.errors.length > 0) throw new ConfigErrors(r.errors);
  const settings = toSettings(v, ctx);
  if (r.errors.length > 0) throw new ConfigErrors(r.errors);
  return settings;
}

export const DEFAULT_SETTINGS: DaemonSettings = parseDaemonSettings('', 'config.yaml');

/** Written to VMCTL_HOME/config.yaml on the daemon's first start. */
export const DEFAULT_SETTINGS_TEXT = annotatedYaml(SETTINGS_SCHEMA, {
  header: ['vmctl daemon settings. Every key is optional; `vmctl schema config` prints the JSON Schema.'],
});

export function loadDaemonSettings(file: string): DaemonSettings {
  if (!existsSync(file)) return DEFAULT_SETTINGS;
  return parseDaemonSettings(readYamlFile(file), file);
}
