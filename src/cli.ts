#!/usr/bin/env node
import { main } from './cli/main.js';
import './cli/register.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`pxeherd: ${(e as Error).message}\n`);
    process.exitCode = 1;
  },
);
