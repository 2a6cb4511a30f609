import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('../scripts/make-fixtures.mjs', import.meta.url));

describe('make-fixtures.mjs', () => {
  it('re-renders the committed fixtures byte for byte (deterministic, up to date)', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [script, '--check']);
    expect(stdout).toBe('greeting.wav: up to date\nshort.wav: up to date\nquestion.wav: up to date\n');
  });
});
