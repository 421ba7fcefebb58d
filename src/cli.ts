#!/usr/bin/env node
/**
 * The `pxeherd` command. Built, it runs from one bundle of pxeherd's own modules and its
 * pure-JavaScript dependencies (dist/bin/, made by scripts/bundle.mjs after tsc): Node 20 has no
 * module compile cache, and resolving, reading and linking some 250 separate files (zod alone
 * is 95) was most of a CLI command's start-up. The bundle splits at the CLI's lazy imports, so a
 * command still loads only what it needs. Without the bundle (run from source under tsx, or a
 * tsc-only build) the modules are loaded one by one, same code.
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const bundle = new URL('./bin/run.js', import.meta.url);
await import(bundle.protocol === 'file:' && fs.existsSync(fileURLToPath(bundle)) ? bundle.href : './cli/run.js');
