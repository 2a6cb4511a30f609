#!/usr/bin/env node
// The `stsgate` bin: runs the command line; the commands themselves are in cli-main.ts (importable by tests).
import { main } from './cli-main.js';

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`stsgate: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
