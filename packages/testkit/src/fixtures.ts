import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Speech fixtures shipped with the test kit (8 kHz mono s16le WAV, made by `scripts/make-fixtures.mjs`). */
export const FIXTURE_NAMES = ['greeting.wav', 'short.wav', 'question.wav'] as const;
export type FixtureName = (typeof FIXTURE_NAMES)[number];
/** A fixture name without its `.wav` suffix. */
export type FixtureBaseName = FixtureName extends `${infer Base}.wav` ? Base : never;

/** What each fixture says (eSpeak NG, en-us). */
export const FIXTURE_TEXT: Readonly<Record<FixtureName, string>> = {
  'greeting.wav': 'Hello, I would like to book an appointment for tomorrow morning.',
  'short.wav': 'Yes, please.',
  'question.wav': 'What time do you open on Saturday?',
};

/**
 * Absolute path of a fixture. Works from `src/` (tests, vitest alias) and from `dist/` (built package): both sit
 * one level below the package root, next to `fixtures/`.
 */
export function fixturePath(name: FixtureName | FixtureBaseName): string {
  const file = name.endsWith('.wav') ? name : `${name}.wav`;
  const path = fileURLToPath(new URL(`../fixtures/${file}`, import.meta.url));
  if (!existsSync(path)) {
    throw new Error(`fixture ${file} not found at ${path}; run "pnpm --filter @stsgate/testkit fixtures"`);
  }
  return path;
}
