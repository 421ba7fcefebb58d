import { InvalidInput } from '../nodes/mac.js';

/**
 * Command templates (`power_on_cmd`, switch kinds) use {{name}} placeholders. Values come
 * from attributes an admin typed, so they are quoted for the shell they end up in, never
 * pasted raw: a port named "1; reboot" stays one word.
 */
const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

export function placeholders(template: string): string[] {
  return [...template.matchAll(PLACEHOLDER)].map((m) => m[1]!);
}

/** POSIX shell quoting; words made of safe characters stay as they are (readable dry-runs). */
export function shellQuote(s: string): string {
  if (s !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function missing(what: string, name: string, vars: Record<string, string>): InvalidInput {
  return new InvalidInput(`${what} uses {{${name}}}, which is not set (known: ${Object.keys(vars).sort().join(', ')})`, what);
}

/** Render for a remote shell (ssh exec): every value shell-quoted. */
export function renderShell(template: string, vars: Record<string, string>, what: string): string {
  return template.replace(PLACEHOLDER, (_, name: string) => {
    const v = vars[name];
    if (v === undefined) throw missing(what, name, vars);
    return shellQuote(v);
  });
}

/** Render for a device CLI (switch consoles) that has no quoting: values must be plain words. */
export function renderPlain(template: string, vars: Record<string, string>, what: string): string {
  return template.replace(PLACEHOLDER, (_, name: string) => {
    const v = vars[name];
    if (v === undefined) throw missing(what, name, vars);
    if (!/^[A-Za-z0-9_./:@-]+$/.test(v)) throw new InvalidInput(`${what}: value of ${name} "${v}" is not a plain word (letters, digits, . / : @ _ -)`, name);
    return v;
  });
}

/**
 * Split a template into argv words (single/double quotes and backslash as in sh, no
 * expansion), then substitute placeholders inside each word. The result is run without a
 * shell, so no value can become a second command.
 */
export function renderArgv(template: string, vars: Record<string, string>, what: string): string[] {
  const words = splitWords(template, what);
  return words.map((w) =>
    w.replace(PLACEHOLDER, (_, name: string) => {
      const v = vars[name];
      if (v === undefined) throw missing(what, name, vars);
      return v;
    }),
  );
}

export function splitWords(s: string, what = 'command'): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === "'") {
      const j = s.indexOf("'", i + 1);
      if (j < 0) throw new InvalidInput(`${what}: unterminated ' quote`, what);
      cur += s.slice(i + 1, j);
      inWord = true;
      i = j + 1;
    } else if (c === '"') {
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length && '"\\$`'.includes(s[i + 1]!)) i++;
        cur += s[i];
        i++;
      }
      if (i >= s.length) throw new InvalidInput(`${what}: unterminated " quote`, what);
      inWord = true;
      i++;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[i + 1];
      inWord = true;
      i += 2;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
      i++;
    } else {
      cur += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) out.push(cur);
  if (out.length === 0) throw new InvalidInput(`${what} is empty`, what);
  return out;
}
