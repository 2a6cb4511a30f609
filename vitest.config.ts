import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Tests import workspace packages (by their package.json name) from source, so `pnpm test` needs no build step.
const root = fileURLToPath(new URL('.', import.meta.url));
const alias: { find: RegExp; replacement: string }[] = [];
for (const group of ['packages', 'apps', 'templates']) {
  for (const dir of readdirSync(`${root}${group}`)) {
    const entry = `${root}${group}/${dir}/src/index.ts`;
    if (!existsSync(entry)) continue;
    const { name } = JSON.parse(readFileSync(`${root}${group}/${dir}/package.json`, 'utf8')) as { name: string };
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    alias.push({ find: new RegExp(`^${escaped}$`), replacement: entry });
  }
}
alias.push({ find: /^@stsgate\/testkit\/conformance$/, replacement: `${root}packages/testkit/src/conformance/index.ts` });

export default defineConfig({
  resolve: { alias },
  test: {
    include: ['packages/*/{src,test}/**/*.test.ts', 'apps/*/{src,test}/**/*.test.ts', 'templates/*/{src,test}/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    pool: 'forks',
    // Most test files wait on real-time calls, not the CPU: three forks on two cores finish the suite in a third of
    // the time of vitest's default (cores - 1 = one fork here), measured with the whole suite passing.
    maxWorkers: 3,
  },
});
