import { Option } from 'commander';
import { InvalidInput } from '../nodes/mac.js';

// Option parsers shared by the commands. They throw InvalidInput, which `main` reports as a
// usage error (exit 2) naming the option and the value, during parsing as in an action.

export const json = () => new Option('--json', 'machine-readable output (stable schema)');

export function positiveInt(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidInput(`${name} must be a whole number >= 1, not "${v}"`, name);
    return n;
  };
}

export function seconds(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidInput(`${name} must be a number of seconds > 0, not "${v}"`, name);
    return n;
  };
}
