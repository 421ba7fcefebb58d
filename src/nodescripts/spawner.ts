import { spawn } from 'node:child_process';

/**
 * Runs one nodescript and reports how it ended. The engine depends only on this interface,
 * so it works with the plain child_process spawner below or with the native helper
 * (helper-spawner.ts), which forks from a tiny process instead of from the big Node heap.
 *
 * Contract for every implementation:
 * - the script runs in a new session/process group (setsid), stdin /dev/null, `env` only;
 * - at `timeoutMs` the whole group gets SIGTERM, `graceMs` later SIGKILL;
 * - when the script itself exits, whatever it left behind in its group is SIGKILLed, so a
 *   stray background job cannot hold the stream open or linger on the master;
 * - stdout beyond `maxStdout` kills the group (reported as outputTooLarge); stderr beyond
 *   `maxStderr` is dropped (stderrTruncated), the script keeps running.
 */
export interface SpawnRequest {
  path: string;
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  graceMs: number;
  maxStdout: number;
  maxStderr: number;
}

export interface SpawnResult {
  pid: number;
  stdout: Buffer;
  stderr: Buffer;
  /** Exit code when the script exited, else null. */
  code: number | null;
  /** Signal name (SIGKILL, ...) when it was killed by a signal, else null. */
  signal: string | null;
  timedOut: boolean;
  outputTooLarge: boolean;
  stderrTruncated: boolean;
  /** Set when the script could not be started at all (EACCES, ENOEXEC, ENOENT ...). */
  spawnError?: string;
}

export interface Spawner {
  readonly kind: string;
  run(req: SpawnRequest): Promise<SpawnResult>;
  close(): Promise<void>;
}

function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    /* ESRCH: the group is already gone */
  }
}

/** Fallback spawner: Node's child_process with detached (setsid) children. */
export class ChildProcessSpawner implements Spawner {
  readonly kind = 'child_process';

  run(req: SpawnRequest): Promise<SpawnResult> {
    return new Promise((resolve) => {
      let child;
      try {
        child = spawn(req.path, [], {
          cwd: req.cwd,
          env: req.env,
          detached: true,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
      } catch (e) {
        resolve(failed(0, (e as Error).message));
        return;
      }
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let outLen = 0;
      let errLen = 0;
      let timedOut = false;
      let outputTooLarge = false;
      let stderrTruncated = false;
      let spawnError: string | undefined;
      let exit: { code: number | null; signal: string | null } | undefined;
      let settled = false;
      const pid = child.pid ?? 0;
      const timers: NodeJS.Timeout[] = [];

      const terminate = () => {
        if (!pid) return;
        killGroup(pid, 'SIGTERM');
        timers.push(setTimeout(() => killGroup(pid, 'SIGKILL'), req.graceMs));
      };
      timers.push(
        setTimeout(() => {
          timedOut = true;
          terminate();
        }, req.timeoutMs),
      );

      child.stdout!.on('data', (b: Buffer) => {
        if (outputTooLarge) return;
        if (outLen + b.length > req.maxStdout) {
          outputTooLarge = true;
          killGroup(pid, 'SIGKILL');
          return;
        }
        out.push(b);
        outLen += b.length;
      });
      child.stderr!.on('data', (b: Buffer) => {
        const room = req.maxStderr - errLen;
        if (room <= 0) {
          stderrTruncated = true;
          return;
        }
        if (b.length > room) stderrTruncated = true;
        const part = b.length > room ? b.subarray(0, room) : b;
        err.push(part);
        errLen += part.length;
      });

      const finish = () => {
        if (settled) return;
        settled = true;
        for (const t of timers) clearTimeout(t);
        resolve({
          pid,
          stdout: Buffer.concat(out),
          stderr: Buffer.concat(err),
          code: exit?.code ?? null,
          signal: exit?.signal ?? null,
          timedOut,
          outputTooLarge,
          stderrTruncated,
          spawnError,
        });
      };
      child.on('error', (e: NodeJS.ErrnoException) => {
        spawnError = e.code ? `${e.code}: ${e.message}` : e.message;
        exit = exit ?? { code: null, signal: null };
        finish();
      });
      child.on('exit', (code, signal) => {
        exit = { code, signal };
        // Leftovers in the group would keep stdout open: kill them now.
        if (pid) killGroup(pid, 'SIGKILL');
        // Normally 'close' follows as soon as the pipes are drained. Only a process that
        // left the group (setsid) can hold them open; do not wait for it forever, but give
        // a loaded machine ample time to deliver what the script wrote.
        timers.push(setTimeout(finish, Math.max(5000, req.graceMs)));
      });
      child.on('close', finish);
    });
  }

  async close(): Promise<void> {}
}

export function failed(pid: number, message: string): SpawnResult {
  return {
    pid,
    stdout: Buffer.alloc(0),
    stderr: Buffer.alloc(0),
    code: null,
    signal: null,
    timedOut: false,
    outputTooLarge: false,
    stderrTruncated: false,
    spawnError: message,
  };
}
