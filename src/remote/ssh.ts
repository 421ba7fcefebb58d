import type ssh2 from 'ssh2';
import { ssh2lib } from './ssh2lib.js';
import type { ClientChannel, ConnectConfig } from 'ssh2';
import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';

/** Where and as whom to log in. Secrets stay in this object; messages only use `label`. */
export interface SshTarget {
  host: string;
  port: number;
  user: string;
  privateKey?: string | Buffer;
  password?: string;
  /** How the credential is described in errors, e.g. "key /var/pxeherd/ssh/id_ed25519". */
  credential?: string;
  /**
   * The host keys the peer must present ("type base64", as in a .pub file), e.g. a node's
   * keys kept on the master (src/stateless/identity.ts). Absent: any host key is accepted.
   */
  hostKeys?: string[];
  /** Where the expected keys come from, for the mismatch message. */
  hostKeysFrom?: string;
}

export type SshStage = 'connect' | 'auth' | 'timeout' | 'exec' | 'hostkey';

/** A failure that names the host, the stage and what to check, never the secret. */
export class SshError extends Error {
  constructor(
    message: string,
    readonly stage: SshStage,
  ) {
    super(message);
    this.name = 'SshError';
  }
}

export interface SshRunOptions {
  /** Whole operation: connect, authenticate, run, close. 0 = no limit once logged in. */
  timeoutMs: number;
  /** Connect + authenticate (default: timeoutMs, at most 15 s). */
  connectTimeoutMs?: number;
  stdin?: string | Buffer;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  /** Per stream; output beyond it is dropped and `truncated` set. */
  maxOutput?: number;
}

export interface SshRunResult {
  /** null when the command ended by a signal or the channel closed without a status. */
  exit: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  truncated: boolean;
}

export function describe(t: Pick<SshTarget, 'host' | 'port' | 'user'>): string {
  return `${t.user}@${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}

/** SHA256:... as ssh-keygen -l prints it. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

function connectError(t: SshTarget, e: Error & { level?: string; code?: string }, timeoutMs: number, badHostKey?: Buffer): SshError {
  const who = describe(t);
  if (badHostKey) {
    return new SshError(
      `host key of ${who} (${fingerprint(badHostKey)}) is not the one pxeherd keeps for it${t.hostKeysFrom ? ` (${t.hostKeysFrom})` : ''}: the machine at that address is not that node, or its keys were replaced; refusing to log in`,
      'hostkey',
    );
  }
  if (e.level === 'client-authentication') {
    return new SshError(`authentication failed for ${who}${t.credential ? ` (tried ${t.credential})` : ''}: the server refused the credential`, 'auth');
  }
  switch (e.code) {
    case 'ECONNREFUSED':
      return new SshError(`cannot connect to ${who}: connection refused (is sshd running there?)`, 'connect');
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new SshError(`cannot connect to ${who}: no route to host`, 'connect');
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new SshError(`cannot connect to ${who}: host name not found`, 'connect');
    case 'ECONNRESET':
      return new SshError(`cannot connect to ${who}: connection reset during the SSH handshake`, 'connect');
  }
  if (/timed out/i.test(e.message)) return timeoutError(t, 'connecting to', timeoutMs);
  return new SshError(`cannot connect to ${who}: ${e.message}`, 'connect');
}

function timeoutError(t: SshTarget, phase: string, timeoutMs: number): SshError {
  const hint = phase === 'connecting to' ? ' (no answer: host down, wrong address or filtered)' : '';
  return new SshError(`timed out after ${fmtSeconds(timeoutMs)} ${phase} ${describe(t)}${hint}`, 'timeout');
}

export function fmtSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}

type Open = (c: ssh2.Client, cb: (err: Error | undefined, ch: ClientChannel) => void) => void;

/**
 * One connection, one channel, then close. The peer's host key is checked against
 * `t.hostKeys` when given (nodes whose keys the master keeps); otherwise any key is accepted
 * (BMCs, switches, nodes installed by other means).
 */
function runChannel(t: SshTarget, open: Open, opts: SshRunOptions, what: string): Promise<SshRunResult> {
  const max = opts.maxOutput ?? 4 << 20;
  return new Promise((resolve, reject) => {
    const c = new (ssh2lib().Client)();
    let phase = 'connecting to';
    let done = false;
    const finish = (err: SshError | undefined, res?: SshRunResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      c.removeAllListeners('ready');
      c.on('error', () => {});
      c.end();
      // end() waits for the peer; a silent peer must not keep the process alive.
      setTimeout(() => c.destroy(), 200).unref();
      if (err) reject(err);
      else resolve(res!);
    };
    const t0 = Date.now();
    const connectMs = opts.connectTimeoutMs ?? (opts.timeoutMs > 0 ? Math.min(opts.timeoutMs, 15_000) : 15_000);
    let limitMs = connectMs;
    let timer: NodeJS.Timeout | undefined = setTimeout(() => finish(timeoutError(t, phase, limitMs)), connectMs);
    let badHostKey: Buffer | undefined;
    c.on('error', (e: Error) => finish(phase === 'connecting to' || badHostKey ? connectError(t, e, connectMs, badHostKey) : new SshError(`${what} on ${describe(t)}: ${e.message}`, 'exec')));
    c.on('close', () => finish(new SshError(`${describe(t)} closed the connection ${phase === 'connecting to' ? 'during the handshake' : `while ${phase.replace(/ on$/, '')}`}`, phase === 'connecting to' ? 'connect' : 'exec')));
    c.on('ready', () => {
      phase = `${what} on`;
      clearTimeout(timer);
      timer = undefined;
      if (opts.timeoutMs > 0) {
        limitMs = opts.timeoutMs;
        timer = setTimeout(() => finish(timeoutError(t, phase, limitMs)), Math.max(1, opts.timeoutMs - (Date.now() - t0)));
      }
      open(c, (err, ch) => {
        if (err) return finish(new SshError(`${describe(t)} refused to ${what}: ${err.message}`, 'exec'));
        const out: Buffer[] = [];
        const errb: Buffer[] = [];
        let outLen = 0;
        let errLen = 0;
        let truncated = false;
        let exit: number | null = null;
        let signal: string | null = null;
        ch.on('data', (d: Buffer) => {
          opts.onStdout?.(d);
          if (outLen < max) out.push(d);
          else truncated = true;
          outLen += d.length;
        });
        ch.stderr.on('data', (d: Buffer) => {
          opts.onStderr?.(d);
          if (errLen < max) errb.push(d);
          else truncated = true;
          errLen += d.length;
        });
        ch.on('exit', (code: number | null, sig?: string) => {
          if (typeof code === 'number') exit = code;
          if (sig) signal = sig;
        });
        ch.on('close', () =>
          finish(undefined, {
            exit,
            signal,
            stdout: Buffer.concat(out).subarray(0, max).toString('utf8'),
            stderr: Buffer.concat(errb).subarray(0, max).toString('utf8'),
            truncated,
          }),
        );
        if (opts.stdin !== undefined) ch.end(opts.stdin);
        else ch.end();
      });
    });
    try {
      c.connect(connectConfig(t, connectMs, (key) => (badHostKey = key)));
    } catch (e) {
      finish(new SshError(`cannot connect to ${describe(t)}: ${(e as Error).message}`, 'connect'));
    }
  });
}

/**
 * ssh2's connection settings for a target: pxeherd's own timer reports timeouts, only the given
 * credential is tried, and with known host keys any other key is refused (and handed to
 * `onBadHostKey` for the error message).
 */
function connectConfig(t: SshTarget, connectMs: number, onBadHostKey: (key: Buffer) => void): ConnectConfig {
  const cfg: ConnectConfig = {
    host: t.host,
    port: t.port,
    username: t.user,
    // Our own timer reports the timeout; ssh2's must not fire first with its own wording.
    readyTimeout: connectMs + 1000,
    // Only the credential given: never fall back to an agent or keyboard prompts.
    tryKeyboard: false,
  };
  if (t.hostKeys) {
    const allowed = new Set(t.hostKeys.map((k) => k.trim().split(/\s+/)[1]).filter(Boolean));
    cfg.hostVerifier = (key: Buffer) => {
      if (allowed.has(key.toString('base64'))) return true;
      onBadHostKey(key);
      return false;
    };
  }
  if (t.privateKey) cfg.privateKey = t.privateKey;
  if (t.password !== undefined) cfg.password = t.password;
  return cfg;
}

/** Run one command (`ssh host COMMAND`): exit status, output, or an SshError. */
export function sshRun(t: SshTarget, command: string, opts: SshRunOptions): Promise<SshRunResult> {
  return runChannel(t, (c, cb) => c.exec(command, cb), opts, 'running a command');
}

/**
 * Feed `input` to an interactive shell and collect what it prints until the device closes
 * the session (switch consoles without an exec channel: the input ends with its logout).
 */
export function sshShell(t: SshTarget, input: string, opts: SshRunOptions): Promise<SshRunResult> {
  return runChannel(t, (c, cb) => c.shell(false, cb), { ...opts, stdin: input }, 'running a shell session');
}

/** The function type the drivers take, so tests and callers can substitute it. */
export type SshRunner = typeof sshRun;

/** A command whose stdout is read as a stream (`vnfs capture`: a whole root filesystem). */
export interface SshStream {
  /** The command's stdout, with backpressure: a slow reader pauses the command on the node. */
  stdout: Readable;
  /**
   * Settles once the channel closed: the exit status and what the command wrote on stderr
   * (the last 64 KiB). Rejects with an SshError when the connection broke or went silent.
   */
  done: Promise<{ exit: number | null; signal: string | null; stderr: string }>;
  /** Give up: close the channel and the connection (the node's command gets SIGPIPE/EOF). */
  abort(reason?: string): void;
}

export interface SshStreamOptions {
  /** Connect + authenticate (default 15 s). */
  connectTimeoutMs?: number;
  /** No byte on stdout or stderr for this long ends it with a timeout error (default 300 s; 0 = never). */
  idleTimeoutMs?: number;
  onStderr?: (chunk: Buffer) => void;
}

/**
 * Run one command and hand its stdout over as a stream. Resolves once the command runs
 * (connected, host key checked as `sshRun` does, logged in); connection, authentication and
 * host-key failures reject with the same SshErrors as `sshRun`.
 */
export function sshExecStream(t: SshTarget, command: string, opts: SshStreamOptions = {}): Promise<SshStream> {
  const connectMs = opts.connectTimeoutMs ?? 15_000;
  const idleMs = opts.idleTimeoutMs ?? 300_000;
  return new Promise((resolveStart, rejectStart) => {
    const c = new (ssh2lib().Client)();
    let started = false;
    let badHostKey: Buffer | undefined;
    let settleDone: ((r: { exit: number | null; signal: string | null; stderr: string }) => void) | undefined;
    let failDone: ((e: SshError) => void) | undefined;
    const done = new Promise<{ exit: number | null; signal: string | null; stderr: string }>((res, rej) => {
      settleDone = res;
      failDone = rej;
    });
    done.catch(() => {}); // the caller may only look once the stream ended
    let channel: ClientChannel | undefined;
    let stdoutStream: Transform | undefined;
    let finished = false;
    const close = () => {
      c.removeAllListeners('ready');
      c.on('error', () => {});
      c.end();
      setTimeout(() => c.destroy(), 200).unref();
    };
    const fail = (e: SshError) => {
      if (finished) return;
      finished = true;
      clearTimeout(connectTimer);
      clearTimeout(idleTimer);
      if (!started) rejectStart(e);
      else {
        failDone!(e);
        channel?.destroy();
        stdoutStream?.destroy(e);
      }
      close();
    };
    const connectTimer = setTimeout(() => fail(timeoutError(t, 'connecting to', connectMs)), connectMs);
    let idleTimer: NodeJS.Timeout | undefined;
    const touch = () => {
      if (!idleMs || finished) return;
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => fail(new SshError(`${describe(t)} sent nothing for ${fmtSeconds(idleMs)} while running a command: giving up`, 'timeout')), idleMs);
    };
    c.on('error', (e: Error) => fail(!started || badHostKey ? connectError(t, e, connectMs, badHostKey) : new SshError(`the connection to ${describe(t)} failed while running a command: ${e.message}`, 'exec')));
    c.on('close', () => fail(new SshError(`${describe(t)} closed the connection ${started ? 'while running a command' : 'during the handshake'}`, started ? 'exec' : 'connect')));
    c.on('ready', () => {
      clearTimeout(connectTimer);
      c.exec(command, (err, ch) => {
        if (err) return fail(new SshError(`${describe(t)} refused to run a command: ${err.message}`, 'exec'));
        channel = ch;
        let stderr = Buffer.alloc(0);
        let exit: number | null = null;
        let signal: string | null = null;
        ch.stderr.on('data', (d: Buffer) => {
          touch();
          opts.onStderr?.(d);
          stderr = Buffer.concat([stderr, d]);
          if (stderr.length > 65536) stderr = stderr.subarray(stderr.length - 65536);
        });
        ch.on('exit', (code: number | null, sig?: string) => {
          if (typeof code === 'number') exit = code;
          if (sig) signal = sig;
        });
        ch.on('close', () => {
          if (finished) return;
          finished = true;
          clearTimeout(idleTimer);
          settleDone!({ exit, signal, stderr: stderr.toString('utf8') });
          close();
        });
        // Nothing to send: the command's stdin is closed at once.
        ch.end();
        started = true;
        touch();
        // Passed through a transform that notices activity; pipe() keeps the backpressure.
        const out = new Transform({
          highWaterMark: 1 << 20,
          transform(chunk: Buffer, _enc, cb) {
            touch();
            cb(null, chunk);
          },
        });
        ch.pipe(out);
        stdoutStream = out;
        resolveStart({
          stdout: out,
          done,
          abort: (reason) => fail(new SshError(`${reason ?? 'aborted'} (${describe(t)})`, 'exec')),
        });
      });
    });
    try {
      c.connect(connectConfig(t, connectMs, (key) => (badHostKey = key)));
    } catch (e) {
      fail(new SshError(`cannot connect to ${describe(t)}: ${(e as Error).message}`, 'connect'));
    }
  });
}
