// The key pair `vmctl ssh` logs in with: one per VMCTL_HOME, in ssh/id_ed25519 (0600) and
// ssh/id_ed25519.pub, made on first use with Node's crypto and written in OpenSSH's own formats
// (PROTOCOL.key "openssh-key-v1", RFC 8709 for the ed25519 public key), so the host's `ssh`
// reads it without ssh-keygen having to be installed. The public key reaches the guest in its
// device tree (/chosen, vmctl,ssh-authorized-keys); the test guest's init installs it.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

export interface SshKeyPaths {
  readonly privateKey: string;
  readonly publicKey: string;
}

export function sshKeyPaths(home: string): SshKeyPaths {
  const dir = join(home, 'ssh');
  return { privateKey: join(dir, 'id_ed25519'), publicKey: join(dir, 'id_ed25519.pub') };
}

/** An SSH wire "string": uint32 length, then the bytes (RFC 4251 5). */
function sshString(b: Uint8Array | string): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b) : Buffer.from(b);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
}

/** A new ed25519 key pair as OpenSSH writes it: the private key file's text and the public line. */
export function makeSshKeyPair(comment: string): { privateText: string; publicLine: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const seed = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
  const pubBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  const check = randomBytes(4);
  let priv = Buffer.concat([check, check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  // Padded with 1, 2, 3, ... to the cipher's block size (8 for "none").
  const pad = (8 - (priv.length % 8)) % 8;
  priv = Buffer.concat([priv, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const body = Buffer.concat([
    Buffer.from('openssh-key-v1\0'), sshString('none'), sshString('none'), sshString(''),
    Buffer.from([0, 0, 0, 1]), sshString(pubBlob), sshString(priv),
  ]).toString('base64');
  const lines = body.match(/.{1,70}/g)!.join('\n');
  return {
    privateText: `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicLine: `ssh-ed25519 ${pubBlob.toString('base64')} ${comment}`,
  };
}

/** The home's public key line, made (with its private key) the first time. */
export function ensureSshKey(home: string): string {
  const p = sshKeyPaths(home);
  if (existsSync(p.privateKey) && existsSync(p.publicKey)) return readFileSync(p.publicKey, 'utf8').trim();
  mkdirSync(join(home, 'ssh'), { recursive: true, mode: 0o700 });
  chmodSync(join(home, 'ssh'), 0o700);
  const { privateText, publicLine } = makeSshKeyPair(`vmctl@${hostname()}`);
  // Written whole, then moved into place: a reader never sees half a key.
  const tmp = `${p.privateKey}.${process.pid}.tmp`;
  writeFileSync(tmp, privateText, { mode: 0o600 });
  renameSync(tmp, p.privateKey);
  writeFileSync(`${p.publicKey}.${process.pid}.tmp`, `${publicLine}\n`, { mode: 0o644 });
  renameSync(`${p.publicKey}.${process.pid}.tmp`, p.publicKey);
  return publicLine;
}
