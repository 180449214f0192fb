// npm run schemas: writes the files derived from the key declarations (scripts/schema-files.ts).
import { build } from 'esbuild';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const tmp = mkdtempSync(join(tmpdir(), 'vmctl-schemas-'));
try {
  const out = join(tmp, 'schema-files.mjs');
  await build({
    entryPoints: ['scripts/schema-files.ts'], outfile: out, bundle: true, platform: 'node', format: 'esm', logLevel: 'warning',
    banner: { js: "import { createRequire as __vmctlCreateRequire } from 'node:module'; const require = __vmctlCreateRequire(import.meta.url);" },
  });
  const { generatedFiles } = await import(pathToFileURL(out).href);
  for (const [file, text] of generatedFiles(readFileSync('README.md', 'utf8'))) {
    let old = null;
    try { old = readFileSync(file, 'utf8'); } catch { /* new */ }
    if (old === text) continue;
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
    console.log(`wrote ${file}`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
