import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Handlebars from 'handlebars';

/** templates/ui of the package, from src/admin (tsx) and dist/admin (built) alike. */
export const DEFAULT_UI_TEMPLATES = fileURLToPath(new URL('../../templates/ui/', import.meta.url));

export const PAGES = ['nodes', 'node', 'groups', 'vnfs', 'events', 'message'] as const;
export type Page = (typeof PAGES)[number];

export function ago(ms: number | null | undefined, now = Date.now()): string {
  if (ms === null || ms === undefined) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/**
 * The UI's handlebars pages. Unlike the boot templates (plain text for iPXE), everything here
 * is HTML: user data (node names, attributes, stderr) only ever goes through {{ }}, which
 * escapes it; the one triple-stash is the layout's {{{body}}}, the already-rendered page.
 */
export class Views {
  private readonly hb = Handlebars.create();
  private readonly layout: Handlebars.TemplateDelegate;
  private readonly pages = new Map<Page, Handlebars.TemplateDelegate>();

  constructor(
    readonly dir: string = DEFAULT_UI_TEMPLATES,
    private readonly now: () => number = Date.now,
  ) {
    this.hb.registerHelper('ago', (ms: number | null) => ago(ms, this.now()));
    this.hb.registerHelper('iso', (ms: number | null) => (ms === null || ms === undefined ? '' : new Date(ms).toISOString()));
    this.hb.registerHelper('eq', (a: unknown, b: unknown) => a === b);
    this.hb.registerHelper('json', (v: unknown) => JSON.stringify(v ?? null));
    this.hb.registerHelper('or', (a: unknown, b: unknown) => a || b);
    const read = (name: string) => fs.readFileSync(path.join(dir, name), 'utf8');
    this.layout = this.hb.compile(read('layout.hbs'), { strict: false });
    for (const p of PAGES) this.pages.set(p, this.hb.compile(read(`${p}.hbs`)));
  }

  render(page: Page, data: Record<string, unknown>, layout: Record<string, unknown> = {}): string {
    const body = this.pages.get(page)!(data);
    return this.layout({ ...layout, body, page });
  }

  static asset(dir: string, name: 'app.js' | 'style.css'): string {
    return fs.readFileSync(path.join(dir, name), 'utf8');
  }
}
