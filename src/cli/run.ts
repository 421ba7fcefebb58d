import { main } from './main.js';
import './register.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`pxeherd: ${(e as Error).message}\n`);
    process.exitCode = 1;
  },
);
