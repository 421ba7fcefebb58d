import { createRequire } from 'node:module';

// ssh2 takes ~160 ms to load; only commands that talk SSH should pay for it, not every
// `pxeherd node list`. It is CommonJS, so a synchronous require on first use is enough.
const require = createRequire(import.meta.url);
let lib: typeof import('ssh2') | undefined;

export function ssh2lib(): typeof import('ssh2') {
  return (lib ??= require('ssh2') as typeof import('ssh2'));
}
