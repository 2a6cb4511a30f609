import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/.turbo/**', 'bench/results/**', '**/*.cjs', 'vitest.config.ts', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  { ignores: ['apps/gateway/playground/src/**'], languageOptions: { globals: globals.node } },
  // The browser playground's page and AudioWorklet sources run in the browser (its build script runs in Node).
  { files: ['apps/gateway/playground/src/**'], languageOptions: { globals: globals.browser } },
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  {
    files: ['**/*.test.ts', 'bench/**', 'scripts/**', 'packages/*/scripts/**'],
    rules: { 'no-console': 'off' },
  },
);
