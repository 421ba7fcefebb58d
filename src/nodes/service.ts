import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import type { Store } from '../store/store.js';
import type { NamingPolicy, NewNode } from '../store/nodes.js';
import { InvalidInput, normalizeMac, parseMac } from './mac.js';
import { validateName } from './names.js';
import { parseSelector, selectNodes, NotFound, type Selector } from './select.js';
import { queryAttrKeys, type QueryContext } from './query.js';
import type { Node, Vnfs } from './types.js';
import { formatNodes, parseNodes, type NodeFormat } from './io.js';
import { compileQuery } from './query-sql.js';
import { resolveVnfsRef, vnfsRefError } from '../images/resolve.js';
import { sha256FileSync, writeMarker } from '../peers/verify.js';

/**
 * The admin operations behind both the CLI and the REST API: one implementation, one set of
 * validation rules, one set of error messages.
 */
export class NodeService {
  constructor(
    private readonly store: Store,
    private readonly config: Config,
    private readonly queryContext: QueryContext = {},
  ) {}

  /** The state directory (images, VNFS files) this service works in. */
  get statedir(): string {
    return this.config.statedir;
  }

  /** Config vnfs.capture_exclude: paths every `vnfs capture` leaves out. */
  get captureExcludes(): string[] {
    return this.config.vnfs.capture_exclude;
  }

  get policy(): NamingPolicy {
    const n = this.config.nodes;
    return { pattern: n.name_pattern, firstNumber: n.first_number, defaultGroup: n.default_group, defaultVnfs: n.default_vnfs };
  }

  /**
   * Resolve NODES arguments. Exact names/MACs must exist when `requireAll`. `attrKeys`: the
   * nodes carry only these attributes (and those the query reads), for output that shows no others.
   */
  select(args: string[], opts: { requireAll?: boolean; attrKeys?: readonly string[] } = {}): Node[] {
    const sel: Selector = parseSelector(args);
    if (sel.kind === 'query') {
      const c = compileQuery(sel.query);
      const rows = this.store.nodes.where(c.sql, c.params, { attrKeys: opts.attrKeys && [...new Set([...opts.attrKeys, ...queryAttrKeys(sel.query)])] });
      // An exact condition decided every node in SQL; only a superset needs the evaluator.
      return c.exact ? rows : selectNodes(sel, rows, { ctx: this.queryContext });
    }
    return selectNodes(sel, this.candidates(sel, opts.attrKeys), { requireAll: opts.requireAll, ctx: this.queryContext });
  }

  /**
   * The nodes a list of names, globs and MACs can match, read without loading every node where
   * the database can narrow it (exact names and MACs by key, globs by their literal prefix).
   * Always a superset; selectNodes decides exactly. (Queries: select, through their SQL form.)
   */
  private candidates(sel: Selector & { kind: 'names' }, attrKeys?: readonly string[]): Node[] {
    const found = new Map<string, Node>();
    for (const p of sel.patterns) {
      if (p.re) {
        // A glob reads the names that start with its literal prefix (n00* -> n00...).
        const prefix = /^[^*?[]*/.exec(p.text)![0];
        if (!prefix) return this.store.nodes.all();
        for (const n of this.store.nodes.where('name >= ? AND name < ?', [prefix, prefix + '\uffff'], { attrKeys })) found.set(n.mac, n);
        continue;
      }
      for (const n of [p.mac !== undefined ? this.store.nodes.byMac(p.mac) : undefined, p.exact !== undefined ? this.store.nodes.byName(p.exact) : undefined]) {
        if (n) found.set(n.mac, n);
      }
    }
    return [...found.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** `attrKeys`: as for select. */
  list(args: string[], opts: { attrKeys?: readonly string[] } = {}): Node[] {
    if (args.length === 0) return opts.attrKeys ? this.store.nodes.where('1 = 1', [], opts) : this.store.nodes.all();
    return this.select(args, opts);
  }

  get(nameOrMac: string): Node {
    const n = this.store.nodes.byName(nameOrMac) ?? (parseMac(nameOrMac).ok ? this.store.nodes.byMac(normalizeMac(nameOrMac)) : undefined);
    if (!n) throw new NotFound(`no node named or with MAC "${nameOrMac}"`);
    return n;
  }

  add(n: NewNode): Node {
    this.checkVnfsExists(n.vnfs);
    return this.store.nodes.add(n, this.policy);
  }

  set(key: string, value: string, args: string[]): Node[] {
    const nodes = this.select(args, { requireAll: true });
    if (nodes.length === 0) throw new NotFound(`no node matches "${args.join(' ')}"`);
    if (key === 'vnfs') this.checkVnfsExists(value);
    return this.store.nodes.set(
      nodes.map((n) => n.mac),
      key,
      value,
    );
  }

  delete(args: string[]): Node[] {
    const nodes = this.select(args, { requireAll: true });
    this.store.nodes.delete(nodes.map((n) => n.mac));
    return nodes;
  }

  replace(oldNode: string, newMac: string): Node {
    const mac = parseMac(newMac);
    if (!mac.ok) throw new InvalidInput(mac.error, 'mac');
    const old = this.get(oldNode);
    return this.store.nodes.replace(old.mac, mac.mac);
  }

  importText(text: string, format: NodeFormat): Node[] {
    const recs = parseNodes(text, format);
    for (const r of recs) this.checkVnfsExists(r.node.vnfs, `line ${r.line}: `);
    return this.store.nodes.addMany(
      recs.map((r) => r.node),
      this.policy,
      (i, e) => (e instanceof InvalidInput ? new InvalidInput(`${format === 'json' ? 'record' : 'line'} ${recs[i]!.line}: ${e.message}`) : e),
    );
  }

  exportText(args: string[], format: NodeFormat): string {
    return formatNodes(this.list(args), format);
  }

  private checkVnfsExists(vnfs: string | undefined, prefix = ''): void {
    if (!vnfs || vnfs === this.config.nodes.default_vnfs) return;
    const bad = vnfsRefError(vnfs);
    if (bad) throw new InvalidInput(prefix + bad, 'vnfs');
    const ref = resolveVnfsRef(vnfs);
    const v = this.store.vnfs.get(ref.name);
    if (!v) throw new InvalidInput(`${prefix}no VNFS named "${ref.name}": add it first with "pxeherd vnfs add ${ref.name} --kernel FILE --initrd FILE" or "pxeherd vnfs build ${ref.name} --debian bookworm"`, 'vnfs');
    if (ref.rev !== undefined && !this.store.vnfs.revision(ref.name, ref.rev)) {
      throw new InvalidInput(`${prefix}VNFS "${ref.name}" has no revision ${ref.rev}: see "pxeherd vnfs revisions ${ref.name}"`, 'vnfs');
    }
  }

  // ---- VNFS -------------------------------------------------------------------------

  vnfsDir(name: string): string {
    return path.join(this.config.statedir, 'vnfs', validateName('vnfs', name));
  }

  /**
   * Copy kernel and initrd into <statedir>/vnfs/NAME/ and record them with their sha256 and
   * size (issue 19: the other servers sharing the database fetch them from images.origins and
   * verify them against it; src/peers/artifacts.ts). Files are written under a temporary name
   * and renamed, so a crash never leaves a half-copied image that nodes would boot. The marker
   * beside each file says this server need not hash it again.
   */
  addVnfs(opts: { name: string; kernel: string; initrd: string; cmdline?: string; attrs?: Record<string, string> }): Vnfs {
    validateName('vnfs', opts.name);
    for (const [what, file] of [
      ['kernel', opts.kernel],
      ['initrd', opts.initrd],
    ] as const) {
      let st: fs.Stats;
      try {
        st = fs.statSync(file);
      } catch {
        throw new InvalidInput(`${what} file "${file}" does not exist`, what);
      }
      if (!st.isFile()) throw new InvalidInput(`${what} "${file}" is not a regular file`, what);
    }
    const dir = this.vnfsDir(opts.name);
    fs.mkdirSync(dir, { recursive: true });
    const kernel = safeBase(opts.kernel, 'vmlinuz');
    const initrd = safeBase(opts.initrd, 'initrd.img');
    if (kernel === initrd) throw new InvalidInput(`kernel and initrd must have different file names (both "${kernel}")`, 'initrd');
    for (const [src, base] of [
      [opts.kernel, kernel],
      [opts.initrd, initrd],
    ] as const) {
      const dst = path.join(dir, base);
      if (path.resolve(src) === path.resolve(dst)) continue;
      const tmp = path.join(dir, `.${base}.tmp-${process.pid}`);
      fs.copyFileSync(src, tmp);
      fs.renameSync(tmp, dst);
    }
    const hashOf = (base: string) => {
      const file = path.join(dir, base);
      const st = fs.statSync(file);
      const sha256 = sha256FileSync(file);
      writeMarker(file, st, sha256);
      return { sha256, size: st.size };
    };
    const hashes = { kernel: hashOf(kernel), initrd: hashOf(initrd) };
    return this.store.vnfs.put({ name: opts.name, kernel, initrd, cmdline: opts.cmdline ?? '', attrs: opts.attrs, hashes });
  }

  deleteVnfs(name: string, keepFiles = false): void {
    this.store.vnfs.delete(name);
    if (!keepFiles) {
      fs.rmSync(this.vnfsDir(name), { recursive: true, force: true });
      // A VNFS with a root filesystem: its revisions' trees (pxeherd vnfs build/import/exec).
      fs.rmSync(path.join(this.config.statedir, 'images', validateName('vnfs', name)), { recursive: true, force: true });
    }
  }
}

/** A file name safe to place in a VNFS directory (no dotfiles, no path). */
function safeBase(file: string, fallback: string): string {
  const b = path.basename(file);
  return /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/.test(b) ? b : fallback;
}
