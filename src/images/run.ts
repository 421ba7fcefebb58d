import { spawn, type SpawnOptions } from 'node:child_process';
import { ImageError } from './errors.js';

/**
 * Running the long tools of image work (mmdebstrap, tar, unshare) asynchronously, so signals
 * and progress keep working. Children get SIGKILL when pxeherd dies (setpriv --pdeathsig):
 * a killed build must not leave a tool writing into a directory nobody owns.
 */
export interface ToolResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

export function runTool(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; stdio?: SpawnOptions['stdio']; onLine?: (line: string) => void; pkg?: string; input?: string; killTree?: boolean } = {},
): Promise<ToolResult> {
  // killTree: the tool forks workers of its own (mmdebstrap: apt, dpkg). In a pid namespace of
  // its own, the kernel kills them all when its first process dies, and unshare --kill-child
  // kills that one when unshare (which dies with pxeherd) goes.
  const wrap = opts.killTree ? ['unshare', '--pid', '--fork', '--kill-child=SIGKILL', '--', cmd, ...args] : [cmd, ...args];
  return new Promise((resolve, reject) => {
    const p = spawn('setpriv', ['--pdeathsig', 'KILL', '--', ...wrap], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: opts.stdio ?? [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let partial = '';
    const onData = (b: Buffer) => {
      const s = b.toString();
      stderr = (stderr + s).slice(-64 * 1024);
      if (opts.onLine) {
        partial += s;
        const lines = partial.split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) if (l.trim()) opts.onLine(l);
      }
    };
    p.stdout?.on('data', onData);
    p.stderr?.on('data', onData);
    if (opts.input !== undefined) p.stdin?.end(opts.input);
    p.on('error', (e) => reject(new ImageError(`${cmd}: ${e.message}${opts.pkg ? ` (install the Debian package "${opts.pkg}")` : ''}`)));
    p.on('close', (code, signal) => {
      if (code === 127 && /setpriv: failed to execute|No such file/.test(stderr)) {
        reject(new ImageError(`${cmd} is not installed${opts.pkg ? `: install the Debian package "${opts.pkg}"` : ''}`));
        return;
      }
      resolve({ code, signal, stderr });
    });
  });
}

/** The last meaningful lines of a tool's output, for an error message. */
export function tail(stderr: string, n = 3): string {
  return stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .slice(-n)
    .join(' | ');
}

/**
 * `tar -c ... | tar -x ...` with the stream passing through pxeherd (progress counts its
 * bytes). `input`: the file list for `-T -`. Resolves with both exit codes and stderr.
 */
export function tarPipe(createArgs: string[], extractArgs: string[], o: { input?: string; onBytes?: (total: number) => void } = {}): Promise<{ codeC: number | null; codeX: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'tar', ...createArgs], { stdio: [o.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const x = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'tar', ...extractArgs], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    let bytes = 0;
    c.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    x.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    c.stdout!.on('data', (b: Buffer) => {
      bytes += b.length;
      o.onBytes?.(bytes);
    });
    c.stdout!.pipe(x.stdin!);
    // The reader may die first (disk full): the writer then gets EPIPE, which is its exit code's business.
    x.stdin!.on('error', () => {});
    if (o.input !== undefined) c.stdin!.end(o.input);
    let codeC: number | null | undefined;
    let codeX: number | null | undefined;
    const finish = () => {
      if (codeC !== undefined && codeX !== undefined) resolve({ codeC, codeX, stderr });
    };
    c.on('error', (e) => reject(new ImageError(`tar: ${e.message}`)));
    x.on('error', (e) => reject(new ImageError(`tar: ${e.message}`)));
    c.on('close', (code) => {
      codeC = code;
      finish();
    });
    x.on('close', (code) => {
      codeX = code;
      finish();
    });
  });
}
