import fs from 'node:fs';
import { loadConfig, ConfigError } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { Store } from '../store/store.js';
import { NodeService } from '../nodes/service.js';
import { InvalidInput } from '../nodes/mac.js';
import { NotFound } from '../nodes/select.js';
import { queryContextFor } from '../inventory/context.js';
import { ImageError } from '../images/errors.js';
import { configSchema } from '../config/schema.js';
import { isPostgresUrl } from '../store/pg/url.js';

/** Exit codes scripts can trust. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A command failed at run time (not the user's input): exit 1. */
export class RuntimeFailure extends Error {
  constructor(
    message: string,
    readonly exitCode = EXIT_FAILURE,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

export interface CommonOpts {
  config?: string;
  json?: boolean;
  /** --database URL: overrides PXEHERD_DATABASE and the configuration's `database`. */
  database?: string;
}

/**
 * Commands that run over PostgreSQL through an in-memory replica (src/store/pg/cli-store.ts),
 * their writes going to PostgreSQL; read-only node and group commands read only their rows
 * (src/store/pg/cli-reads.ts), writing commands, explain and script load only the rows they
 * touch (src/store/pg/cli-writes.ts), power, exec, overlay, stage1 and the image commands too,
 * `vnfs sync` its VNFS records and the revisions nodes pin (what is left loads the whole
 * database). `db` and `serve` open PostgreSQL themselves. VNFS bytes stay on this machine's disk
 * (the state directory), their revision records go to the database, and the other servers fetch
 * the bytes from an origin (images.origins) when a node needs them.
 */
const PG_COMMANDS = new Set(['node', 'group', 'vnfs', 'script', 'explain', 'stage1', 'power', 'exec', 'overlay']);

/** What a command needs, built lazily so `--help` never touches the disk. */
export class CliContext {
  private _config?: Config;
  private _store?: Store;
  private _service?: NodeService;
  private _pg?: import('../store/pg/cli-store.js').PgCliStore;
  private _pgRead?: import('../store/pg/cli-reads.js').PgReadStore;
  private _writeScope?: import('../store/pg/cli-writes.js').WriteScope;
  private _namingFirst?: number;
  private _inputs?: Map<string, string>;
  /** Output held while a command that may be run again runs (see runCommand). */
  private _held?: { out: string[]; err: string[] };
  constructor(
    readonly opts: CommonOpts,
    private readonly baseIo: { out: (s: string) => void; err: (s: string) => void } = {
      out: (s) => process.stdout.write(s),
      err: (s) => process.stderr.write(s),
    },
  ) {}

  /** Where the command writes its output (held while it may still be run again). */
  get io(): { out: (s: string) => void; err: (s: string) => void } {
    const held = this._held;
    return held ? { out: (s) => void held.out.push(s), err: (s) => void held.err.push(s) } : this.baseIo;
  }

  get config(): Config {
    if (!this._config) {
      const c = loadConfig(this.opts.config);
      if (this.opts.database !== undefined) {
        const res = configSchema.shape.database.safeParse(this.opts.database);
        if (!res.success) throw new InvalidInput(`--database: ${res.error.issues[0]!.message}`, 'database');
        c.database = res.data;
      }
      this._config = c;
    }
    return this._config;
  }

  /**
   * Before the command: node and group commands on a postgres:// database get their store as an
   * in-memory replica of it, and run inside `runCommand` so what they write goes to PostgreSQL.
   */
  async prepare(command: { name(): string; parent: unknown }): Promise<void> {
    let top = command as { name(): string; parent: { parent: unknown } | null };
    while (top.parent && top.parent.parent) top = top.parent as typeof top;
    if (!PG_COMMANDS.has(top.name()) || !isPostgresUrl(this.config.database ?? '')) return;
    const leaf = command as { name(): string; opts?: () => Record<string, unknown>; args?: string[] };
    // `node timeline` reads the node and every server's events from PostgreSQL itself
    // (src/cli/commands/timeline-pg.ts): no replica needed.
    if (leaf.name() === 'timeline') return;
    // Read-only commands read only the rows they show (src/store/pg/cli-reads.ts).
    const { readScopeFor, openPgReadStore, PgReadError } = await import('../store/pg/cli-reads.js');
    const scope = readScopeFor(commandPath(command), leaf.args ?? [], this.opts.json === true);
    if (scope) {
      try {
        this._pgRead = await openPgReadStore(this.config, scope);
      } catch (e) {
        if (e instanceof PgReadError) throw new RuntimeFailure(e.message);
        throw e;
      }
      this._store = this._pgRead.store;
      return;
    }
    // Writing commands, explain and script load only the rows they touch (src/store/pg/cli-writes.ts).
    // exec, overlay, stage1 and the image commands too; `node import -` reads standard input here,
    // once, and the command gets the same text (readInput).
    const { writeScopeFor } = await import('../store/pg/cli-writes.js');
    const path = commandPath(command);
    let args = leaf.args ?? [];
    if (path.join(' ') === 'exec') {
      // Its NODES are the words before `--`; without a command exec refuses before it selects
      // (so does this: no nodes, no NODES parsed).
      const tail = afterDashDash(command);
      args = tail?.length ? args.slice(0, args.length - tail.length) : [];
    }
    this._writeScope = writeScopeFor(path, args, leaf.opts?.() ?? {}, this.config, (f) => this.readInput(f));
    await this.openPgCli();
  }

  /**
   * A command's input file, `-` for standard input: read once, so the PostgreSQL path can look
   * at it (which rows to load) and the command then gets the same text. Throws what readFileSync throws.
   */
  readInput(file: string): string {
    this._inputs ??= new Map();
    let text = this._inputs.get(file);
    if (text === undefined) {
      text = fs.readFileSync(file === '-' ? 0 : file, 'utf8');
      this._inputs.set(file, text);
    }
    return text;
  }

  /** The replica a writing command runs on: its scope's rows, or (not scoped) the whole database. */
  private async openPgCli(): Promise<void> {
    const { openPgCliStore, PgCliError } = await import('../store/pg/cli-store.js');
    try {
      this._pg = await openPgCliStore(this.config, this._writeScope);
    } catch (e) {
      if (e instanceof PgCliError) throw new RuntimeFailure(e.message);
      if (isConnectionLike(e)) throw new RuntimeFailure(`cannot read the database: ${(e as Error).message}`);
      throw e;
    }
    this._store = this._pg.store;
    this._service = undefined;
    // The pattern's free names start there in PostgreSQL (computed with SQLite's rule): the
    // store's naming, over the rows loaded, gives the names SQLite would.
    this._namingFirst = this._pg.scoped?.firstNumber;
  }

  /** The PostgreSQL replica a writing command runs on (undefined on SQLite). */
  get pgCli(): import('../store/pg/cli-store.js').PgCliStore | undefined {
    return this._pg;
  }

  /**
   * Run the command; on PostgreSQL, its writes are in PostgreSQL when this resolves. A scoped
   * command whose names or MACs another writer took between its load and its write (PostgreSQL's
   * unique keys refused it: nothing was written) runs again on a fresh load, which sees the
   * winner: it then takes the next free name, or fails as it would on SQLite. Its output is held
   * until the run that counts.
   */
  async runCommand(fn: () => void | Promise<void>): Promise<void> {
    if (!this._pg) return fn();
    if (!this._writeScope?.retryOnConflict) return this.runOnce(fn);
    const { WriteRefused } = await import('../store/pg/writer.js');
    for (let attempt = 1; ; attempt++) {
      this._held = { out: [], err: [] };
      let failure: unknown;
      try {
        await this.runOnce(fn);
      } catch (e) {
        failure = e;
      }
      const held = this._held;
      this._held = undefined;
      const conflict = failure instanceof RuntimeFailure && failure.cause instanceof WriteRefused && failure.cause.status === 409;
      // Each round lost means another writer won a row: with N writers after one name, the last
      // one wins at round N at the latest (bounded like PostgresBackend's REGISTER_ROUNDS).
      if (conflict && attempt < 20) {
        await new Promise((r) => setTimeout(r, Math.random() * 20 * Math.min(attempt, 5)));
        await this._pg.close();
        await this.openPgCli();
        continue;
      }
      for (const s of held.out) this.baseIo.out(s);
      for (const s of held.err) this.baseIo.err(s);
      if (failure !== undefined) throw failure;
      return;
    }
  }

  private async runOnce(fn: () => void | Promise<void>): Promise<void> {
    if (!this._pg) return fn();
    // A command that fails after writing (a reinstall whose node failed) keeps what it wrote
    // and recorded, as on SQLite: commit either way, then report the command's own failure.
    try {
      await this._pg.run(fn);
    } catch (e) {
      await this._pg.commit().catch(() => undefined); // the command's own failure is what it reports
      throw e;
    }
    try {
      await this._pg.commit();
    } catch (e) {
      throw new RuntimeFailure((e as Error).message, EXIT_FAILURE, e);
    }
  }
  get store(): Store {
    if (!this._store) {
      fs.mkdirSync(this.config.statedir, { recursive: true });
      this._store = Store.openConfigured(this.config);
    }
    return this._store;
  }
  get nodes(): NodeService {
    if (!this._service) {
      const first = this._namingFirst;
      const config = first === undefined ? this.config : { ...this.config, nodes: { ...this.config.nodes, first_number: first } };
      this._service = new NodeService(this.store, config, queryContextFor(this.store));
    }
    return this._service;
  }

  /** Print `data` as JSON (stable schema) with --json, else the human text. */
  print(data: unknown, text: () => string): void {
    if (this.opts.json) this.io.out(JSON.stringify(data, null, 2) + '\n');
    else {
      const t = text();
      if (t) this.io.out(t.endsWith('\n') ? t : t + '\n');
    }
  }

  /** `group list`'s groups: on PostgreSQL with the node counts read there (no node rows). */
  groupList(): ReturnType<Store['groups']['list']> {
    return this._pgRead ? this._pgRead.groups() : this.store.groups.list();
  }

  /** How many nodes a group has (`group set`): on PostgreSQL counted there, in the command's snapshot (no node rows). */
  groupNodeCount(name: string): number {
    return this._pg?.scoped?.groupCounts?.get(name) ?? this.store.groups.get(name)!.nodes;
  }

  /** `vnfs list`'s images: on PostgreSQL with the node counts read there (no node rows). */
  vnfsList(): ReturnType<Store['vnfs']['list']> {
    return this._pgRead ? this._pgRead.vnfs() : this.store.vnfs.list();
  }

  /**
   * `vnfs sync`'s pins: the distinct NAME@REV values of the nodes' `vnfs` field, each in the order
   * of the first node (by name) holding it. On PostgreSQL read by a query (no node rows loaded).
   */
  vnfsPins(): string[] {
    const pins = this._pg?.scoped?.vnfsPins;
    if (pins) return pins;
    return this.store.db
      .prepare<[], { vnfs: string }>("SELECT vnfs, min(name) AS first FROM nodes WHERE instr(vnfs, '@') > 0 GROUP BY vnfs ORDER BY first")
      .all()
      .map((r) => r.vnfs);
  }

  close(): void | Promise<void> {
    if (this._pg) return this._pg.close();
    if (this._pgRead) return this._pgRead.close();
    this._store?.close();
  }
}

function isConnectionLike(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return typeof code === 'string' && /^(ECONN|ENOENT|EPIPE|ETIMEDOUT|CONNECT_TIMEOUT|CONNECTION_)/.test(code);
}

/** The words after `--` on the command line (commander drops the marker itself). */
export function afterDashDash(cmd: unknown): string[] | undefined {
  let root = cmd as { parent: unknown };
  while (root.parent) root = root.parent as typeof root;
  const raw = (root as unknown as { rawArgs?: string[] }).rawArgs ?? [];
  const i = raw.indexOf('--');
  return i < 0 ? undefined : raw.slice(i + 1);
}

/** The command words from the top: ['node', 'list']. */
function commandPath(command: unknown): string[] {
  const out: string[] = [];
  for (let c = command as { name(): string; parent: unknown } | null; c && c.parent; c = c.parent as typeof c) out.unshift(c.name());
  return out;
}

/** Map an error to its exit code and one-line reason. */
export function exitCodeFor(e: unknown): { code: number; message: string } {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof InvalidInput || e instanceof ConfigError || e instanceof NotFound || e instanceof ImageError) return { code: EXIT_USAGE, message };
  if (e instanceof RuntimeFailure) return { code: e.exitCode, message };
  return { code: EXIT_FAILURE, message };
}

/** Aligned text table. */
export function table(headers: string[], rows: (string | number)[][]): string {
  // One pass for the widths and one for the lines, no intermediate arrays per column:
  // `node list` at 100 000 nodes prints tens of thousands of rows.
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths: number[] = headers.map(() => 0);
  for (const r of cells) {
    for (let i = 0; i < r.length && i < widths.length; i++) if (r[i]!.length > widths[i]!) widths[i] = r[i]!.length;
  }
  let out = '';
  for (const r of cells) {
    let line = '';
    for (let i = 0; i < r.length; i++) line += i === r.length - 1 ? r[i]! : r[i]!.padEnd(widths[i] ?? 0) + '  ';
    out += line.trimEnd() + '\n';
  }
  return out;
}

export function ago(ms: number | null, now = Date.now()): string {
  if (ms === null) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
