// Bundles the TypeScript sources into dist/ with esbuild (one file per entry point).
// Entry points are listed here; an entry whose source does not exist yet is reported and skipped.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';

const entries = {
  cli: 'src/cli/main.ts',           // bin/vmctl loads this
  'vm-worker': 'src/vm/worker.ts',  // one per running VM (worker thread)
  'hart-worker': 'src/vm/hart-worker.ts', // one per further hart of a VM (src/board/smp.ts)
  'definition-worker': 'src/daemon/definition-worker.ts', // the daemon's VM definition validator threads
  bench: 'src/bench/main.ts',       // npm run bench
  'bench-linux': 'src/bench/linux-boot.ts', // npm run bench:linux
  'ram-prototype': 'src/bench/ram-prototype.ts', // npm run bench:ram (docs/guest-ram.md)
  litmus: 'src/bench/litmus.ts',     // npm run bench:litmus (docs/harts.md)
  'bench-inproc': 'src/bench/boot.ts', // Linux in one process, for profiling (see the file)
  sched: 'src/bench/sched.ts',       // npm run bench:sched (docs/harts.md)
  'bench-memory': 'src/bench/memory.ts', // npm run bench:memory
  'wasm-tier': 'src/bench/wasm-tier.ts', // npm run bench:wasm (docs/guest-ram.md (e))
};

const present = Object.fromEntries(Object.entries(entries).filter(([, src]) => existsSync(src)));
for (const [name, src] of Object.entries(entries)) {
  if (!(name in present)) console.error(`build: skipping ${name} (${src} does not exist)`);
}
await build({
  entryPoints: present,
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: true,
  packages: 'external',
  logLevel: 'warning',
  banner: { js: "import { createRequire as __vmctlCreateRequire } from 'node:module'; const require = __vmctlCreateRequire(import.meta.url);" },
});
