// network: in the VM definition: the default NIC, none, lists of user and switch NICs with
// forwards, and every refusal at its FILE:LINE:COL.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigErrors } from '../../src/config/errors.js';
import { loadVmDefinition, parseVmDefinition, serializeVmDefinition } from '../../src/config/vm-definition.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmctl-netconfig-'));
  writeFileSync(join(dir, 'k.elf'), 'x');
  for (let i = 0; i < 8; i++) writeFileSync(join(dir, `d${i}.img`), Buffer.alloc(4096));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BASE = 'name: n\nboot:\n  kernel: k.elf\n';
const parse = (text: string) => parseVmDefinition(BASE + text, 'vm.yaml', dir);
const disks = (n: number): string => `disks:\n${Array.from({ length: n }, (_, i) => `  - path: d${i}.img\n`).join('')}`;

function errorsOf(text: string): string[] {
  try {
    parse(text);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigErrors);
    return (e as ConfigErrors).errors.map((x) => x.message);
  }
  throw new Error('expected errors');
}

function roundTrip(text: string): void {
  const d = parse(text);
  const f = join(dir, 'stored.yaml');
  writeFileSync(f, serializeVmDefinition(d));
  expect(loadVmDefinition(f)).toEqual(d);
}

describe('network: in the VM definition', () => {
  it('absent: one NIC on user-mode NAT, decided again at each read (the stored form has no key)', () => {
    const d = parse('');
    expect(d.network).toEqual({ explicit: false, nics: [{ mode: 'user', forwards: [], restrict: false }] });
    expect(serializeVmDefinition(d)).not.toContain('network');
    roundTrip('');
  });

  it('absent with 8 disks: no NIC and a warning (a file that validated before still does)', () => {
    const d = parse(disks(8));
    expect(d.network.nics).toEqual([]);
    expect(d.warnings?.join()).toMatch(/no NIC: the 8 disks take all 8 virtio slots/);
  });

  it('none: no NIC; user: one on user-mode NAT', () => {
    expect(parse('network: none\n').network).toEqual({ explicit: true, nics: [] });
    expect(parse('network: user\n').network.nics).toEqual([{ mode: 'user', forwards: [], restrict: false, mac: undefined }].map(({ mac: _m, ...n }) => n));
    roundTrip('network: none\n');
  });

  it('a list: forwards on 127.0.0.1 unless an address is given, restrict, a switch NIC, a MAC', () => {
    const d = parse([
      'network:',
      '  - mode: user',
      '    forwards:',
      '      - { host: 2222, guest: 22 }',
      '      - { proto: udp, host: "0.0.0.0:5353", guest: 53 }',
      '      - { host: 0, guest: 80 }',
      '    restrict: true',
      '  - mode: switch',
      '    name: lab',
      '    mac: "52:54:00:aa:bb:cc"',
      '',
    ].join('\n'));
    expect(d.network).toEqual({
      explicit: true,
      nics: [
        {
          mode: 'user', restrict: true, forwards: [
            { proto: 'tcp', hostAddress: '127.0.0.1', hostPort: 2222, guestPort: 22 },
            { proto: 'udp', hostAddress: '0.0.0.0', hostPort: 5353, guestPort: 53 },
            { proto: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestPort: 80 },
          ],
        },
        { mode: 'switch', name: 'lab', mac: '52:54:00:aa:bb:cc' },
      ],
    });
    roundTrip('network:\n  - forwards: [{ host: "10.1.2.3:8080", guest: 80 }]\n  - { mode: switch, name: lab }\n');
  });

  it('refuses bad forwards, modes and names at their keys', () => {
    expect(errorsOf('network:\n  - forwards:\n      - { host: 99999, guest: 22 }\n')).toEqual([
      'vm.yaml:6:17: network[0].forwards[0].host: port 99999 is out of range; expected 0..65535 (0: any free port)',
    ]);
    expect(errorsOf('network:\n  - forwards:\n      - { host: "300.1.1.1:80", guest: 22 }\n')).toEqual([
      'vm.yaml:6:17: network[0].forwards[0].host: "300.1.1.1" is not an IPv4 address (forwards listen on IPv4, e.g. 127.0.0.1 or 0.0.0.0)',
    ]);
    expect(errorsOf('network:\n  - forwards:\n      - { host: "localhost:80", guest: 0, proto: sctp }\n')).toEqual([
      'vm.yaml:6:17: network[0].forwards[0].host: found "localhost:80"; expected a port, or ADDRESS:PORT like "0.0.0.0:8080"',
      'vm.yaml:6:40: network[0].forwards[0].guest: found 0; expected a whole number from 1 to 65535',
      'vm.yaml:6:50: network[0].forwards[0].proto: found "sctp"; expected tcp or udp',
    ]);
    expect(errorsOf('network:\n  - mode: switch\n')).toEqual([
      'vm.yaml:5:5: missing key "network[0].name"; a NIC with mode: switch needs the network\'s name',
    ]);
    expect(errorsOf('network:\n  - mode: switch\n    name: lab\n    forwards: [{ host: 1, guest: 2 }]\n')).toEqual([
      'vm.yaml:7:5: network[0].forwards: forwards is for mode: user, and this NIC is mode: switch; expected no forwards here',
    ]);
    expect(errorsOf('network:\n  - mode: bridge\n')).toEqual(['vm.yaml:5:11: network[0].mode: found "bridge"; expected user or switch']);
    expect(errorsOf('network: nat\n')).toEqual(['vm.yaml:4:10: network: found "nat"; expected none or user']);
  });

  it('refuses a host port forwarded twice, a multicast or repeated MAC', () => {
    expect(errorsOf('network:\n  - forwards: [{ host: 8080, guest: 80 }, { host: "127.0.0.1:8080", guest: 81 }]\n').join()).toMatch(
      /network\[0\]\.forwards\[1\]\.host: tcp 127\.0\.0\.1:8080 is already forwarded by network\[0\]\.forwards\[0\]/);
    expect(errorsOf('network:\n  - mac: "01:00:5e:00:00:01"\n').join()).toMatch(/network\[0\]\.mac: 01:00:5e:00:00:01 cannot be a NIC's address: it is a multicast address/);
    expect(errorsOf('network:\n  - mac: "52:54:00:00:00:01"\n  - mac: "52:54:00:00:00:01"\n').join()).toMatch(/network\[1\]\.mac: .* is also network\[0\]'s address/);
  });

  it('an explicit NIC that does not fit beside the disks is an error at its key', () => {
    expect(errorsOf(`${disks(7)}network:\n  - mode: user\n  - mode: user\n`).join()).toMatch(
      /network\[1\]: no virtio slot left for this NIC: 7 disks and 2 NICs; the board has 8 slots/);
    expect(parse(`${disks(7)}network:\n  - mode: user\n`).network.nics).toHaveLength(1);
  });
});
