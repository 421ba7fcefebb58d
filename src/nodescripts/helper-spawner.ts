import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsc } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { constants as osc } from 'node:os';
import { ChildProcessSpawner, failed, type SpawnRequest, type SpawnResult, type Spawner } from './spawner.js';

/**
 * Spawner backed by native/spawner/pxeherd-spawner: a few-KB C process that forks the
 * nodescripts, so the cost of fork() no longer grows with the Node heap. Wire format is
 * documented in spawner.c; encode/decode here are pure and unit-tested.
 */

/** Where the helper is built (`make -C native/spawner`), seen from src/ and from dist/. */
export const DEFAULT_HELPER_PATH = fileURLToPath(new URL('../../native/spawner/pxeherd-spawner', import.meta.url));

export function encodeRequest(id: number, req: SpawnRequest): Buffer {
  // One string, one buffer: this runs for every script of every node (a buffer per
  // variable and a concat cost ~3x as much).
  let text = `${req.path.replace(/\0/g, '')}\0${req.cwd.replace(/\0/g, '')}\0`;
  let count = 2;
  for (const k in req.env) {
    const kv = `${k}=${req.env[k]}`;
    text += (kv.includes('\0') ? kv.replace(/\0/g, '') : kv) + '\0';
    count++;
  }
  const bodyBytes = Buffer.byteLength(text, 'utf8');
  const buf = Buffer.allocUnsafe(28 + bodyBytes);
  buf.writeUInt32LE(24 + bodyBytes, 0);
  buf.writeUInt32LE(id >>> 0, 4);
  buf.writeUInt32LE(clampU32(req.timeoutMs), 8);
  buf.writeUInt32LE(clampU32(req.graceMs), 12);
  buf.writeUInt32LE(clampU32(req.maxStdout), 16);
  buf.writeUInt32LE(clampU32(req.maxStderr), 20);
  buf.writeUInt32LE(count, 24);
  buf.write(text, 28, 'utf8');
  return buf;
}

function clampU32(n: number): number {
  return Math.max(0, Math.min(0xffffffff, Math.round(n)));
}

const SIGNAL_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(osc.signals).map(([name, num]) => [num as number, name]),
);
const ERRNO_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(osc.errno).map(([name, num]) => [num as number, name]),
);

export interface DecodedResponse {
  id: number;
  result: SpawnResult;
}

/** Incremental decoder: feed bytes, get complete responses. Malformed input is an error value. */
export class ResponseDecoder {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): { responses: DecodedResponse[]; error?: string } {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const responses: DecodedResponse[] = [];
    let off = 0;
    while (this.buf.length - off >= 4) {
      const len = this.buf.readUInt32LE(off);
      if (len < 24) return { responses, error: `malformed helper response (length ${len})` };
      if (this.buf.length - off - 4 < len) break;
      const p = this.buf.subarray(off + 4, off + 4 + len);
      off += 4 + len;
      const id = p.readUInt32LE(0);
      const pid = p.readInt32LE(4);
      const kind = p[8]!;
      const value = p.readInt32LE(12);
      const olen = p.readUInt32LE(16);
      if (20 + olen + 4 > len) return { responses, error: 'malformed helper response (stdout length)' };
      const stdout = Buffer.from(p.subarray(20, 20 + olen));
      const elen = p.readUInt32LE(20 + olen);
      if (24 + olen + elen > len) return { responses, error: 'malformed helper response (stderr length)' };
      const stderr = Buffer.from(p.subarray(24 + olen, 24 + olen + elen));
      const result: SpawnResult = {
        pid,
        stdout,
        stderr,
        code: kind === 0 ? value : null,
        signal: kind === 1 ? (SIGNAL_NAMES[value] ?? `signal ${value}`) : null,
        timedOut: p[9] === 1,
        outputTooLarge: p[10] === 1,
        stderrTruncated: p[11] === 1,
      };
      if (kind === 2) result.spawnError = `${ERRNO_NAMES[value] ?? `errno ${value}`}: cannot execute`;
      responses.push({ id, result });
    }
    this.buf = off === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(off);
    return { responses };
  }
}

/** One helper process and the jobs in flight on it. */
class Helper {
  private proc: ChildProcess | undefined;
  private decoder = new ResponseDecoder();
  readonly pending = new Map<number, (r: SpawnResult) => void>();

  constructor(
    private readonly path: string,
    private readonly log: (msg: string) => void,
  ) {}

  private ensure(): ChildProcess {
    if (this.proc) return this.proc;
    const proc = spawn(this.path, [], { stdio: ['pipe', 'pipe', 'inherit'], env: {} });
    this.decoder = new ResponseDecoder();
    proc.stdout!.on('data', (b: Buffer) => {
      const { responses, error } = this.decoder.push(b);
      for (const r of responses) {
        const done = this.pending.get(r.id);
        this.pending.delete(r.id);
        done?.(r.result);
      }
      if (error) {
        this.log(`nodescript spawner helper: ${error}; restarting it`);
        proc.kill('SIGKILL');
      }
    });
    const gone = (why: string) => {
      if (this.proc !== proc) return;
      this.proc = undefined;
      for (const [, done] of this.pending) done(failed(0, `spawner helper ${why}`));
      this.pending.clear();
    };
    proc.on('exit', (code, sig) => gone(`exited (${sig ?? code})`));
    proc.on('error', (e) => gone(`failed: ${e.message}`));
    proc.stdin!.on('error', () => {});
    this.proc = proc;
    return proc;
  }

  run(id: number, req: SpawnRequest): Promise<SpawnResult> {
    return new Promise((resolve) => {
      const proc = this.ensure();
      this.pending.set(id, resolve);
      proc.stdin!.write(encodeRequest(id, req));
    });
  }

  async close(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      // EOF tells the helper to kill running groups and exit.
      proc.stdin!.end();
      setTimeout(() => proc.kill('SIGKILL'), 2000).unref();
    });
  }
}

export class HelperSpawner implements Spawner {
  readonly kind = 'native-helper';
  private readonly helpers: Helper[];
  private nextId = 1;
  private readonly log: (msg: string) => void;
  /** Set when the helper cannot be started at all; jobs then go to child_process. */
  private fallback: Spawner | undefined;

  constructor(opts: { path?: string; helpers?: number; log?: (msg: string) => void } = {}) {
    const n = Math.max(1, opts.helpers ?? Math.min(4, os.availableParallelism?.() ?? os.cpus().length));
    this.log = opts.log ?? ((m: string) => console.error(m));
    this.helpers = Array.from({ length: n }, () => new Helper(opts.path ?? DEFAULT_HELPER_PATH, this.log));
  }

  async run(req: SpawnRequest): Promise<SpawnResult> {
    if (this.fallback) return this.fallback.run(req);
    // Least loaded helper: forks spread over the cores.
    let best = this.helpers[0]!;
    for (const h of this.helpers) if (h.pending.size < best.pending.size) best = h;
    const id = this.nextId;
    this.nextId = this.nextId >= 0xfffffff0 ? 1 : this.nextId + 1;
    const r = await best.run(id, req);
    if (r.pid === 0 && r.spawnError?.startsWith('spawner helper failed')) {
      // The helper binary itself cannot run (wrong architecture, not executable): the
      // script never started, so running it with child_process instead is safe.
      if (!this.fallback) {
        this.log(`nodescripts: ${r.spawnError}; using child_process from now on (rebuild it: make -C native/spawner)`);
        this.fallback = new ChildProcessSpawner();
      }
      return this.fallback.run(req);
    }
    return r;
  }

  async close(): Promise<void> {
    await Promise.all(this.helpers.map((h) => h.close()));
  }
}

/**
 * The native helper when it is built, else child_process with one clear log line saying
 * how to get the fast path.
 */
export function createSpawner(opts: { helperPath?: string; helpers?: number; log?: (msg: string) => void; prefer?: 'auto' | 'native' | 'child_process' } = {}): Spawner {
  const log = opts.log ?? ((m: string) => console.error(m));
  const path = opts.helperPath ?? DEFAULT_HELPER_PATH;
  const prefer = opts.prefer ?? 'auto';
  if (prefer !== 'child_process' && isExecutable(path)) return new HelperSpawner({ path, helpers: opts.helpers, log });
  if (prefer !== 'child_process') {
    log(`nodescripts: spawner helper ${path} not found, using child_process (slower); build it with: make -C native/spawner`);
  }
  return new ChildProcessSpawner();
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, fsc.X_OK);
    return true;
  } catch {
    return false;
  }
}
