import { spawn } from 'node:child_process';

export interface LocalResult {
  exit: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** ENOENT, EACCES ...: the program could not be started. */
  spawnError?: string;
}

export type LocalRunner = (argv: string[], opts: { env: NodeJS.ProcessEnv; timeoutMs: number }) => Promise<LocalResult>;

/** Run a program without a shell; killed (whole process group) at the timeout. */
export const runLocal: LocalRunner = (argv, opts) =>
  new Promise((resolve) => {
    const [file, ...args] = argv;
    const child = spawn(file!, args, { env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let spawnError: string | undefined;
    const kill = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, opts.timeoutMs);
    child.stdout.on('data', (d: Buffer) => out.length < 1024 && out.push(d));
    child.stderr.on('data', (d: Buffer) => err.length < 1024 && err.push(d));
    child.on('error', (e: NodeJS.ErrnoException) => {
      spawnError = e.code === 'ENOENT' ? `${file}: not found` : e.code === 'EACCES' ? `${file}: permission denied` : e.message;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ exit: code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), timedOut, spawnError });
    });
  });
