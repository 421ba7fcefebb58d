import path from 'node:path';
import type { EventSink, Node } from '../nodes/types.js';
import { stateError } from '../nodes/names.js';
import { compareBytes, scriptLabel, type PlannedScript, type SkippedScript, type Where } from './collect.js';
import { collectScripts, readScriptHeader } from './fsread.js';
import { headerErrorText, whenFails, type ScriptHeader } from './when.js';
import { DEFAULT_PATH, scriptEnv, type EnvContext, type ImageEnv } from './env.js';
import { Semaphore } from './semaphore.js';
import type { SpawnResult, Spawner } from './spawner.js';
import { ChildProcessSpawner } from './spawner.js';
import { abortLines, continueLine, STREAM_END, STREAM_START, terminated } from './stream.js';

export interface EngineOptions {
  /** nodescripts.dir: holds <state>/{all,group/G,vnfs/V,node/N}/ */
  dir: string;
  /** STATEDIR for the scripts, and their working directory. */
  statedir: string;
  vnfs?: { method?: string; master?: string; prefix?: string };
  timeoutSeconds?: number;
  maxParallel?: number;
  onError?: 'abort' | 'continue';
  spawner?: Spawner;
  events?: EventSink;
  /** Merged attributes (group < node) for ATTR_ variables; default node.attrs. */
  attrsFor?: (node: Node) => Record<string, string>;
  /** VNFSREV/VNFSROOT: the revision the node boots (pins applied); default: none. */
  imageFor?: (node: Node, attrs: Record<string, string>) => ImageEnv | undefined;
  /** Between SIGTERM and SIGKILL of a timed-out script's group. */
  killGraceMs?: number;
  maxStderrBytes?: number;
  maxStdoutBytes?: number;
  path?: string;
}

export interface ScriptListing {
  /** `error`: a malformed pxeherd- header ("bad pxeherd header: line N: ..."); the script fails at run time with it. */
  order: { name: string; where: Where; path: string; error?: string }[];
  skipped: { name: string; where: Where; path: string; reason: string }[];
  /** Invalid state word or node/group/VNFS names that could not be looked up, malformed headers. */
  problems: string[];
}

/** A script that will be started, or that fails without being started (`headerError`). */
export interface ScriptToRun extends PlannedScript {
  headerError?: string;
}

/**
 * Apply the scripts' pxeherd-when: headers (when.ts) to the environment they would run
 * with: the ones whose conditions do not hold are skipped without a fork; a script with a
 * malformed header stays in the order, marked, and fails there instead of running.
 */
export function selectByHeaders(
  order: readonly PlannedScript[],
  env: Record<string, string>,
  headerOf: (s: PlannedScript) => ScriptHeader = (s) => readScriptHeader(s.path, s.stamp),
): { run: ScriptToRun[]; skipped: SkippedScript[] } {
  const run: ScriptToRun[] = [];
  const skipped: SkippedScript[] = [];
  for (const s of order) {
    const h = headerOf(s);
    if (h.errors.length) {
      run.push({ ...s, headerError: `bad pxeherd header: ${headerErrorText(h.errors)}` });
      continue;
    }
    const why = h.when.length ? whenFails(h.when, env) : undefined;
    if (why === undefined) run.push(s);
    else skipped.push({ name: s.name, where: s.where, path: s.path, kind: 'when', reason: why });
  }
  return { run, skipped };
}

export interface ScriptFailure {
  script: string;
  reason: string;
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  stderr: string;
}

export interface RunSummary {
  ok: boolean;
  /** Scripts that ran (successfully or not). */
  scripts: number;
  failures: ScriptFailure[];
  skipped: SkippedScript[];
  /** The client went away (signal aborted) before the stream ended. */
  aborted: boolean;
  durationMs: number;
}

export interface RunOptions {
  /** Current address of the node (IPADDR); default node.ip. */
  ip?: string;
  attrs?: Record<string, string>;
  /** Stop running further scripts (client disconnected). */
  signal?: AbortSignal;
  /** NODETOKEN for the scripts: a fresh node token, when tokens are on. */
  token?: string;
}

/** Receives the stream in order; may return a promise to apply backpressure. */
export type ChunkWriter = (chunk: Buffer | string) => void | Promise<void>;

const noEvents: EventSink = { record() {} };

/**
 * Runs a node's nodescripts for a state and streams their output. One engine per server:
 * it owns the global bound on concurrently running scripts.
 */
export class NodescriptEngine {
  readonly dir: string;
  private readonly ctx: EnvContext;
  private readonly timeoutMs: number;
  private readonly onError: 'abort' | 'continue';
  private readonly sem: Semaphore;
  readonly spawner: Spawner;
  private readonly events: EventSink;
  private readonly attrsFor: (node: Node) => Record<string, string>;
  private readonly imageFor?: (node: Node, attrs: Record<string, string>) => ImageEnv | undefined;
  private readonly graceMs: number;
  private readonly maxStderr: number;
  private readonly maxStdout: number;
  private reqSeq = 0;

  constructor(opts: EngineOptions) {
    this.dir = path.resolve(opts.dir);
    this.ctx = {
      statedir: path.resolve(opts.statedir),
      vnfsMethod: opts.vnfs?.method ?? 'http',
      vnfsMaster: opts.vnfs?.master ?? '',
      vnfsPrefix: opts.vnfs?.prefix ?? '',
      path: opts.path ?? DEFAULT_PATH,
    };
    this.timeoutMs = Math.round((opts.timeoutSeconds ?? 60) * 1000);
    this.onError = opts.onError ?? 'abort';
    this.sem = new Semaphore(opts.maxParallel ?? 8);
    this.spawner = opts.spawner ?? new ChildProcessSpawner();
    this.events = opts.events ?? noEvents;
    this.attrsFor = opts.attrsFor ?? ((n) => n.attrs ?? {});
    this.imageFor = opts.imageFor;
    this.graceMs = opts.killGraceMs ?? 2000;
    this.maxStderr = opts.maxStderrBytes ?? 64 * 1024;
    this.maxStdout = opts.maxStdoutBytes ?? 16 * 1024 * 1024;
  }

  /** Scripts currently running / waiting for a slot (for metrics). */
  get load(): { running: number; waiting: number } {
    return { running: this.sem.active, waiting: this.sem.waiting };
  }

  /**
   * Which scripts would run for (node, state), in order, and which are skipped and why
   * (pxeherd-when: headers evaluated against the environment a run would have now).
   */
  async listScripts(node: Node, state: string, opts: Pick<RunOptions, 'attrs' | 'ip'> = {}): Promise<ScriptListing> {
    const sErr = stateError(state);
    if (sErr) return { order: [], skipped: [], problems: [sErr] };
    const plan = await collectScripts(this.dir, state, node);
    const sel = selectByHeaders(plan.order, this.envFor(node, state, opts));
    const skipped = [...plan.skipped, ...sel.skipped].sort((a, b) => compareBytes(a.name, b.name));
    return {
      order: sel.run.map(({ name, where, path: p, headerError }) => ({ name, where, path: p, ...(headerError ? { error: headerError } : {}) })),
      skipped: skipped.map(({ name, where, path: p, reason }) => ({ name, where, path: p, reason })),
      problems: [...plan.problems, ...sel.run.flatMap((s) => (s.headerError ? [`${s.path}: ${s.headerError}`] : []))],
    };
  }

  /** The environment the node's scripts get (the same for every script of a request). */
  private envFor(node: Node, state: string, opts: Pick<RunOptions, 'attrs' | 'ip' | 'token'>): Record<string, string> {
    const attrs = opts.attrs ?? this.attrsFor(node);
    return scriptEnv(node, state, attrs, this.ctx, opts.ip, opts.token, this.imageFor?.(node, attrs));
  }

  /**
   * Run the scripts and write the stream. Never throws for script problems: they are in the
   * stream and the summary. The state word must have been validated by the caller.
   */
  async run(node: Node, state: string, write: ChunkWriter, opts: RunOptions = {}): Promise<RunSummary> {
    const t0 = Date.now();
    const sErr = stateError(state);
    if (sErr) throw new Error(sErr);
    const prio = this.reqSeq++;
    const plan = await collectScripts(this.dir, state, node);
    const env = this.envFor(node, state, opts);
    // Skipped by their headers: no fork, and no event each (most init scripts, for every
    // node without a root filesystem); they are in the summary and in `script list`.
    const sel = selectByHeaders(plan.order, env);
    const failures: ScriptFailure[] = [];
    let scripts = 0;
    let aborted = false;
    const base = { mac: node.mac, node: node.name };
    for (const problem of plan.problems) {
      this.events.record({ ...base, kind: 'nodescript.skip', detail: { state, reason: problem } });
    }
    for (const s of plan.skipped) {
      if (s.kind === 'overridden') continue;
      this.events.record({ ...base, kind: 'nodescript.skip', detail: { script: scriptLabel(state, s), reason: s.reason } });
    }

    await write(STREAM_START);
    for (const s of sel.run) {
      if (opts.signal?.aborted) {
        aborted = true;
        break;
      }
      if (s.headerError) {
        // Not started: its conditions are unknown. Fails like a script would.
        const label = scriptLabel(state, s);
        const failure: ScriptFailure = { script: label, reason: s.headerError, code: null, signal: null, timedOut: false, stderr: '' };
        failures.push(failure);
        this.events.record({ ...base, kind: 'nodescript.fail', detail: { ...failure, onError: this.onError } });
        if (this.onError === 'abort') {
          await write(abortLines(label, s.headerError));
          break;
        }
        await write(continueLine(label, s.headerError));
        continue;
      }
      const release = await this.sem.acquire(prio);
      let res: SpawnResult;
      try {
        if (opts.signal?.aborted) {
          aborted = true;
          break;
        }
        res = await this.spawner.run({
          path: s.path,
          cwd: this.ctx.statedir,
          env,
          timeoutMs: this.timeoutMs,
          graceMs: this.graceMs,
          maxStdout: this.maxStdout,
          maxStderr: this.maxStderr,
        });
      } finally {
        release();
      }
      scripts++;
      const label = scriptLabel(state, s);
      const reason = this.failureReason(res);
      if (!reason) {
        if (res.stderr.length) {
          this.events.record({ ...base, kind: 'nodescript.stderr', detail: { script: label, stderr: res.stderr.toString('utf8'), truncated: res.stderrTruncated } });
        }
        if (res.stdout.length) await write(terminated(res.stdout));
        continue;
      }
      const failure: ScriptFailure = {
        script: label,
        reason,
        code: res.code,
        signal: res.signal,
        timedOut: res.timedOut,
        stderr: res.stderr.toString('utf8'),
      };
      failures.push(failure);
      this.events.record({ ...base, kind: 'nodescript.fail', detail: { ...failure, pid: res.pid, stderrTruncated: res.stderrTruncated, onError: this.onError } });
      if (this.onError === 'abort') {
        await write(abortLines(label, reason));
        break;
      }
      await write(continueLine(label, reason));
      // Perceus sent a failing script's output anyway; keep that, except for output cut
      // short by a kill (it may end in the middle of a command).
      if (res.code !== null && !res.timedOut && !res.outputTooLarge && res.stdout.length) await write(terminated(res.stdout));
    }
    if (!aborted) await write(STREAM_END);
    const skipped = sel.skipped.length ? [...plan.skipped, ...sel.skipped].sort((a, b) => compareBytes(a.name, b.name)) : plan.skipped;
    return { ok: failures.length === 0 && !aborted, scripts, failures, skipped, aborted, durationMs: Date.now() - t0 };
  }

  /**
   * The exact bytes a node would receive (same code path as the stream), for
   * `pxeherd script render`. Note: this runs the scripts on the master.
   */
  async renderScript(node: Node, state: string, opts: Omit<RunOptions, 'signal'> = {}): Promise<{ text: string; ok: boolean; failure?: ScriptFailure; summary: RunSummary }> {
    const chunks: Buffer[] = [];
    const summary = await this.run(node, state, (c) => void chunks.push(typeof c === 'string' ? Buffer.from(c) : c), opts);
    return { text: Buffer.concat(chunks).toString('utf8'), ok: summary.ok, failure: summary.failures[0], summary };
  }

  private failureReason(r: SpawnResult): string | undefined {
    if (r.spawnError) return `cannot execute: ${r.spawnError}`;
    if (r.timedOut) return `timed out after ${this.timeoutMs / 1000} s`;
    if (r.outputTooLarge) return `output larger than ${this.maxStdout} bytes`;
    if (r.signal) return `killed by ${r.signal}`;
    if (r.code !== 0) return `exit code ${r.code}`;
    return undefined;
  }

  async close(): Promise<void> {
    await this.spawner.close();
  }
}
