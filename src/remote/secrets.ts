import fs from 'node:fs';
import path from 'node:path';
import { InvalidInput } from '../nodes/mac.js';

/**
 * Credentials live in <statedir>/secrets/; attributes only name a file there
 * (`bmc_password_file=ipmi-rack12`), so `node show`, exports and events never carry a
 * password. A name reaching outside the folder is refused.
 */
export function secretsDir(statedir: string): string {
  return path.join(statedir, 'secrets');
}

export function readSecret(statedir: string, name: string, attr: string): string {
  const dir = path.resolve(secretsDir(statedir));
  const file = path.resolve(dir, name);
  if (!file.startsWith(dir + path.sep)) {
    throw new InvalidInput(`${attr} "${name}" must name a file inside ${dir}/`, attr);
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InvalidInput(`${attr}: cannot read ${file}${code ? ` (${code})` : ''}: put the secret there (mode 0600)`, attr);
  }
  // Files are written with `echo`; the trailing newline is not part of the password.
  return text.replace(/\r?\n$/, '');
}

/**
 * Replaces every known secret in text that leaves the process (output, errors, events).
 * Secrets shorter than 4 characters are replaced too; an empty one is ignored.
 */
export class Redactor {
  private readonly secrets = new Set<string>();
  add(secret: string | undefined): this {
    if (secret) this.secrets.add(secret);
    return this;
  }
  redact(text: string): string {
    let out = text;
    for (const s of [...this.secrets].sort((a, b) => b.length - a.length)) out = out.split(s).join('********');
    return out;
  }
}
