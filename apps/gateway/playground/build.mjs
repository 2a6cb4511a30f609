// Builds the browser playground (`STSGATE_PLAYGROUND=true`) into dist/playground, or into the directory given as the
// first argument: the page, its style sheet, the page script and its two AudioWorklet processors, bundled with core's
// resampler and AVR message schemas. Run by the gateway's `build` script; the gateway serves exactly these files.
// The sources import those core modules by relative path: core's package entry point also loads Node-only code.
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = fileURLToPath(new URL('.', import.meta.url));
const outDir = process.argv[2] ?? join(here, '../dist/playground');

await mkdir(outDir, { recursive: true });
await build({
  entryPoints: {
    playground: join(here, 'src/main.ts'),
    'capture-worklet': join(here, 'src/capture-worklet.ts'),
    'playback-worklet': join(here, 'src/playback-worklet.ts'),
  },
  outdir: outDir,
  tsconfig: join(here, 'tsconfig.json'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});
await Promise.all(['index.html', 'playground.css'].map((file) => copyFile(join(here, file), join(outDir, file))));
