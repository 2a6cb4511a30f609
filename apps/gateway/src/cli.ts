#!/usr/bin/env node
// The `stsgate` bin: runs the command line; the commands themselves are in cli-main.ts (importable by tests).
import { main } from './cli-main.js';

main(process.argv.slice(2)).then(
  (code) => {
    // A finished command exits now: a provider's keep-alive socket or a closing handshake must not delay it.
    process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(`stsgate: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
