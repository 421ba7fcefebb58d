import { FIXED_VARS } from './env.js';

/**
 * `pxeherd-when:` headers: a nodescript declares when it applies, and the engine decides
 * without forking it. Most shipped init scripts apply only to a VNFS with a root filesystem;
 * for any other node each of them was a fork that printed nothing (`[ "$VNFSROOT" = 1 ] ||
 * exit 0`): in a 1000-node storm, thousands of forks on the master for no output.
 *
 *   #!/bin/sh
 *   # what this script does ...
 *   # pxeherd-when: VNFSROOT=1 INSTALL=disk INSTALL_ERROR=
 *
 * Grammar (one or more such lines, anywhere in the comment block at the top of the file,
 * i.e. before its first line that is neither a comment nor empty, within HEAD_BYTES):
 *   line      = "#" [blanks] "pxeherd-when:" condition { blanks condition }
 *   condition = NAME "=" values     NAME's value is one of values
 *             | NAME "!=" values    NAME's value is none of values
 *   values    = value { "|" value } a value may be empty: `X=` holds when X is empty or unset,
 *                                   `X!=` when it is set and not empty, `X!=|no` when it is
 *                                   neither empty nor "no"
 *   NAME      = a variable of the script's environment (env.ts): VNFSROOT, VNFS, GROUPNAME ...,
 *               INSTALL, INSTALL_*, ATTR_* (upper case, as the script sees it)
 *   value     = letters, digits and . _ : / @ + , % - (no quotes: nothing is expanded)
 * Every condition of every line must hold (AND); an unset variable is empty, as in sh.
 * The script runs only when all hold; otherwise it is skipped and `pxeherd script list NODE`
 * says which condition failed and the node's value.
 *
 * Strict on purpose: a misspelt directive (`# pxeherd-wen:`), an unknown variable, a quoted
 * value or a header below the first command is an error naming the file and line, shown by
 * `pxeherd script list` and failing the script at run time like a non-zero exit: never
 * silently ignored, because an ignored condition means a script running where it must not
 * (or the reverse).
 *
 * Pure: parse text, evaluate against an environment. fsread.ts reads the files (once per
 * version of a file).
 */

/** How much of a file is read for headers. */
export const HEAD_BYTES = 16 * 1024;

export interface WhenCondition {
  name: string;
  negate: boolean;
  values: string[];
  /** 1-based line in the file. */
  line: number;
  /** The condition as written (`VNFSROOT=1`), for messages. */
  text: string;
}

export interface HeaderError {
  line: number;
  message: string;
}

export interface ScriptHeader {
  when: WhenCondition[];
  errors: HeaderError[];
}

export const NO_HEADER: ScriptHeader = Object.freeze({ when: [], errors: [] }) as ScriptHeader;

/** Any `# pxeherd-NAME:` line is a directive; only `when` is known. */
const DIRECTIVE = /^#[ \t]*pxeherd-([A-Za-z0-9_-]+)[ \t]*:(.*)$/i;
/** `# pxeherd-when` without its colon: a typo, not prose. */
const WHEN_NO_COLON = /^#[ \t]*pxeherd-when\b(?![ \t]*:)/i;
const CONDITION = /^([A-Za-z_][A-Za-z0-9_]*)(!?=)(.*)$/;
const VALUE = /^[A-Za-z0-9._:/@+,%-]*$/;
/** Variables a condition may not test: per-request secrets are not known to `script list`. */
const NOT_TESTABLE = new Set(['NODETOKEN']);

/** Is NAME a variable the engine sets (or may set) for a nodescript? Returns an error message if not. */
export function nameProblem(name: string): string | undefined {
  if (NOT_TESTABLE.has(name)) return `${name} differs on every request and cannot be tested in pxeherd-when`;
  if ((FIXED_VARS as readonly string[]).includes(name)) return undefined;
  if (/^INSTALL(_[A-Z0-9_]+)?$/.test(name)) return undefined;
  if (/^ATTR_[A-Z0-9_]+$/.test(name)) return undefined;
  if (/^ATTR_/i.test(name)) return `${name}: attribute variables are upper case (${name.toUpperCase()}), as the script sees them`;
  const upper = name.toUpperCase();
  if (upper !== name && nameProblem(upper) === undefined) return `unknown variable ${name}: did you mean ${upper}?`;
  const squeezed = upper.replace(/_/g, '');
  const near = FIXED_VARS.find((v) => v === squeezed && !NOT_TESTABLE.has(v));
  if (near) return `unknown variable ${name}: did you mean ${near}?`;
  return `unknown variable ${name}: a condition tests a variable of the script's environment (${FIXED_VARS.filter((v) => !NOT_TESTABLE.has(v)).join(' ')}, INSTALL, INSTALL_*, ATTR_*)`;
}

function parseConditions(body: string, line: number, errors: HeaderError[]): WhenCondition[] {
  const words = body.trim().split(/[ \t]+/).filter(Boolean);
  if (!words.length) {
    errors.push({ line, message: 'pxeherd-when: has no condition (write e.g. `# pxeherd-when: VNFSROOT=1`)' });
    return [];
  }
  const out: WhenCondition[] = [];
  for (const w of words) {
    const m = CONDITION.exec(w);
    if (!m) {
      errors.push({ line, message: `pxeherd-when: "${w}" is not NAME=VALUE or NAME!=VALUE` });
      continue;
    }
    const [, name, op, rest] = m as unknown as [string, string, string, string];
    const problem = nameProblem(name);
    if (problem) {
      errors.push({ line, message: `pxeherd-when: ${problem}` });
      continue;
    }
    const values = rest.split('|');
    const bad = values.find((v) => !VALUE.test(v));
    if (bad !== undefined) {
      errors.push({
        line,
        message: `pxeherd-when: value "${bad}" of ${name} may only hold letters, digits and . _ : / @ + , % - (no quotes, nothing is expanded: write ${name}${op}1)`,
      });
      continue;
    }
    out.push({ name, negate: op === '!=', values, line, text: w });
  }
  return out;
}

/**
 * The headers of a script, from the first bytes of its file. A file that does not start
 * with `#` (a binary) has none. `truncated`: head is the first HEAD_BYTES of a longer file.
 */
export function parseHeader(head: string, truncated = false): ScriptHeader {
  if (!head.startsWith('#')) return NO_HEADER;
  const lines = head.split('\n');
  // The last line may be cut at HEAD_BYTES: only whole lines count.
  if (truncated && lines.length > 1) lines.pop();
  const when: WhenCondition[] = [];
  const errors: HeaderError[] = [];
  let inBlock = true;
  let firstCommand = 0;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.replace(/\r$/, '');
    const line = i + 1;
    if (inBlock && !(raw.startsWith('#') || raw.trim() === '')) {
      inBlock = false;
      firstCommand = line;
    }
    if (!raw.startsWith('#')) continue;
    if (i === 0 && raw.startsWith('#!')) continue;
    const d = DIRECTIVE.exec(raw);
    const noColon = !d && WHEN_NO_COLON.test(raw);
    if (!d && !noColon) continue;
    if (!inBlock) {
      errors.push({ line, message: `pxeherd header below the first command (line ${firstCommand}): move it into the comment block at the top of the script` });
      continue;
    }
    if (noColon) {
      errors.push({ line, message: 'pxeherd-when needs a colon: `# pxeherd-when: NAME=VALUE ...`' });
      continue;
    }
    const [, directive, body] = d as unknown as [string, string, string];
    if (directive !== 'when') {
      errors.push({ line, message: `unknown header pxeherd-${directive}: (the only one is pxeherd-when:)` });
      continue;
    }
    when.push(...parseConditions(body, line, errors));
  }
  return when.length || errors.length ? { when, errors } : NO_HEADER;
}

/** `'value'` for messages, cut at 60 characters (INSTALL_ERROR is a sentence). */
function shown(v: string): string {
  const s = v.length > 60 ? `${v.slice(0, 57)}...` : v;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Does the script apply to this environment? Undefined when it does, else why not. */
export function whenFails(conds: readonly WhenCondition[], env: Record<string, string>): string | undefined {
  for (const c of conds) {
    const v = env[c.name] ?? '';
    if (c.values.includes(v) !== c.negate) continue;
    return `pxeherd-when: ${c.text}, node has ${c.name}=${shown(v)}`;
  }
  return undefined;
}

/** "line N: message; line M: ..." (line 0: about the whole file, e.g. it cannot be read). */
export function headerErrorText(errors: readonly HeaderError[]): string {
  return errors.map((e) => (e.line ? `line ${e.line}: ${e.message}` : e.message)).join('; ');
}
