// vmctl's ssh key pair, written by Node's crypto in OpenSSH's formats: the host's ssh-keygen must
// read the private key and derive the same public key line.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureSshKey, sshKeyPaths } from '../../src/daemon/ssh-key.js';

const home = mkdtempSync(join(tmpdir(), 'vmctl-sshkey-'));
afterAll(() => rmSync(home, { recursive: true, force: true }));
const haveKeygen = spawnSync('ssh-keygen', ['-?']).error === undefined;

describe('ssh key pair of a VMCTL_HOME', () => {
  it('is made once, private key 0600 in a 0700 folder, and kept', () => {
    const line = ensureSshKey(home);
    expect(line).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43} vmctl@/);
    const p = sshKeyPaths(home);
    expect(statSync(p.privateKey).mode & 0o777).toBe(0o600);
    expect(statSync(join(home, 'ssh')).mode & 0o777).toBe(0o700);
    expect(readFileSync(p.privateKey, 'utf8')).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+\n-----END OPENSSH PRIVATE KEY-----\n$/);
    expect(ensureSshKey(home)).toBe(line);
  });

  it.skipIf(!haveKeygen)('OpenSSH reads the private key and derives the same public key', () => {
    const r = spawnSync('ssh-keygen', ['-y', '-f', sshKeyPaths(home).privateKey], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(readFileSync(sshKeyPaths(home).publicKey, 'utf8').trim());
  });
});
