import fs from 'node:fs';
import path from 'node:path';
import Handlebars from 'handlebars';

/** Which boot configuration language a template renders. */
export type TemplateKind = 'ipxe' | 'pxelinux' | 'grub';

export const TEMPLATE_EXT: Record<TemplateKind, string> = { ipxe: '.ipxe', pxelinux: '.cfg', grub: '.cfg' };

/** What decides the template: a node's identity, or one of the fixed situations. */
export type TemplateSelector =
  | { use: 'provision'; node: string; group: string; vnfs: string }
  | { use: 'local' | 'disabled' | 'discovery' | 'unknown'; node?: string; group?: string };

/**
 * Template names to try, most specific first (relative to a templates directory). Pure.
 *   provision:  <kind>/node/<name>  <kind>/group/<group>  <kind>/vnfs/<vnfs>  <kind>/default
 *   local|disabled|discovery|unknown: <kind>/node/<name>.<use>  <kind>/group/<group>.<use>  <kind>/<use>
 * Names reaching this point are validated node/group/VNFS names (no '/', no '..').
 */
export function templateCandidates(kind: TemplateKind, sel: TemplateSelector): string[] {
  const ext = TEMPLATE_EXT[kind];
  const out: string[] = [];
  if (sel.use === 'provision') {
    if (sel.node) out.push(`${kind}/node/${sel.node}${ext}`);
    if (sel.group) out.push(`${kind}/group/${sel.group}${ext}`);
    if (sel.vnfs) out.push(`${kind}/vnfs/${sel.vnfs}${ext}`);
    out.push(`${kind}/default${ext}`);
  } else {
    if (sel.node) out.push(`${kind}/node/${sel.node}.${sel.use}${ext}`);
    if (sel.group) out.push(`${kind}/group/${sel.group}.${sel.use}${ext}`);
    out.push(`${kind}/${sel.use}${ext}`);
  }
  return out;
}

export class TemplateError extends Error {
  constructor(
    message: string,
    readonly template: string,
  ) {
    super(message);
    this.name = 'TemplateError';
  }
}

export interface FoundTemplate {
  /** Name relative to its directory, e.g. ipxe/group/compute.ipxe */
  name: string;
  /** Absolute path of the file that was used. */
  file: string;
}

/**
 * Template files searched in several directories (the admin's <statedir>/templates first,
 * then the repository's templates/), each compiled once and recompiled when the file
 * changes, so an admin's edit takes effect on the next boot without a restart.
 */
export class TemplateStore {
  private readonly cache = new Map<string, { mtimeMs: number; size: number; fn: HandlebarsTemplateDelegate }>();

  constructor(readonly dirs: string[]) {}

  find(candidates: string[]): FoundTemplate | undefined {
    for (const name of candidates) {
      for (const dir of this.dirs) {
        const file = path.join(dir, name);
        try {
          if (fs.statSync(file).isFile()) return { name, file };
        } catch {
          /* not here */
        }
      }
    }
    return undefined;
  }

  /** Render the template with the context; errors name the template and the missing value. */
  render(t: FoundTemplate, context: object): string {
    let st: fs.Stats;
    let src: string | undefined;
    try {
      st = fs.statSync(t.file);
    } catch (e) {
      throw new TemplateError(`template ${t.name} cannot be read: ${(e as Error).message}`, t.name);
    }
    let entry = this.cache.get(t.file);
    if (!entry || entry.mtimeMs !== st.mtimeMs || entry.size !== st.size) {
      src = fs.readFileSync(t.file, 'utf8');
      // noEscape: these are kernel command lines and shell-like scripts, not HTML ('=' must stay '=').
      // strict: a misspelt or absent value is an error, not a silently empty kernel argument.
      const fn = Handlebars.compile(src, { noEscape: true, strict: true });
      entry = { mtimeMs: st.mtimeMs, size: st.size, fn };
      this.cache.set(t.file, entry);
    }
    try {
      return entry.fn(context);
    } catch (e) {
      throw new TemplateError(describeHandlebarsError(e as Error, src ?? safeRead(t.file), t.name), t.name);
    }
  }
}

function safeRead(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/**
 * Handlebars says `"initrdUrl" not defined in [object Object] - 3:12` or gives a parse
 * error; turn it into "template X line 3: {{vnfs.initrdUrl}} is not defined".
 */
export function describeHandlebarsError(e: Error, source: string, name: string): string {
  const m = /^"([^"]*)" not defined in .* - (\d+):(\d+)$/.exec(e.message);
  if (m) {
    const line = Number(m[2]);
    const col = Number(m[3]);
    const text = source.split('\n')[line - 1] ?? '';
    const expr = /^[\w.@/[\]-]+/.exec(text.slice(col))?.[0] ?? m[1];
    return `template ${name} line ${line}: {{${expr}}} is not defined (missing value "${m[1]}")`;
  }
  const first = e.message.split('\n')[0];
  return `template ${name}: ${first}`;
}
