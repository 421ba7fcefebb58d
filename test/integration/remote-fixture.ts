// Shared pieces of the remote-* integration tests: a real SSH server (ssh2's Server) that
// checks public keys and passwords and records every command, an in-process CLI with the
// remote commands mounted where the lead mounts them, and a blackholed address inside a
// network namespace of our own.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { CommanderError, Option, type Command } from 'commander';
import ssh2 from 'ssh2';
import type { AuthContext, Connection } from 'ssh2';
import { buildProgram, extraCommands, loadCommands, type Run } from '../../src/cli/main.js';
import { execCommand, groupDeployCommand, nodeLocateCommand, nodeReinstallCommand, powerCommand } from '../../src/cli/commands/remote.js';

export interface SshCall {
  user: string;
  kind: 'exec' | 'shell';
  command: string;
  stdin: string;
  auth: 'publickey' | 'password';
}

export interface Reply {
  exit?: number;
  stdout?: string;
  stderr?: string;
  delayMs?: number;
}

export interface FakeSshdOptions {
  /** "ssh-ed25519 AAAA..." lines accepted for any user. */
  authorizedKeys?: string[];
  /** user -> password */
  passwords?: Record<string, string>;
  /** Answer for an exec request; default exit 0, no output. */
  onExec?: (call: SshCall) => Reply | Promise<Reply>;
  /** For shell sessions: the console's answer to one typed line ('' = nothing). */
  onShellLine?: (line: string) => string;
  prompt?: string;
  /** The server's host key (OpenSSH private key text); default a fresh ed25519 key. */
  hostKey?: string | Buffer;
}

/** A real SSH server on 127.0.0.1: key and password authentication, recorded commands. */
export class FakeSshd {
  readonly calls: SshCall[] = [];
  readonly authFailures: { user: string; method: string }[] = [];
  private readonly server: ssh2.Server;
  private readonly conns = new Set<Connection>();
  port = 0;

  constructor(private readonly o: FakeSshdOptions = {}) {
    const hostKey = o.hostKey ?? validKey();
    const allowed = (o.authorizedKeys ?? []).map((line) => {
      const k = ssh2.utils.parseKey(line);
      if (k instanceof Error) throw k;
      return Array.isArray(k) ? k[0]! : k;
    });
    this.server = new ssh2.Server({ hostKeys: [hostKey] }, (client) => {
      this.conns.add(client);
      client.on('close', () => this.conns.delete(client));
      client.on('error', () => {});
      let user = '';
      let via: SshCall['auth'] = 'publickey';
      client.on('authentication', (ctx: AuthContext) => {
        user = ctx.username;
        if (ctx.method === 'publickey') {
          const k = allowed.find((a) => a.type === ctx.key.algo && a.getPublicSSH().equals(ctx.key.data));
          if (k && (!ctx.signature || k.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true)) {
            via = 'publickey';
            return ctx.accept();
          }
        } else if (ctx.method === 'password') {
          if (o.passwords && o.passwords[ctx.username] !== undefined && o.passwords[ctx.username] === ctx.password) {
            via = 'password';
            return ctx.accept();
          }
        }
        if (ctx.method !== 'none') this.authFailures.push({ user: ctx.username, method: ctx.method });
        ctx.reject(['publickey', 'password']);
      });
      client.on('ready', () => {
        client.on('session', (accept) => {
          const session = accept();
          session.on('exec', (acc, _rej, info) => {
            const stream = acc();
            const chunks: Buffer[] = [];
            stream.on('data', (d: Buffer) => chunks.push(d));
            stream.on('end', async () => {
              const call: SshCall = { user, kind: 'exec', command: info.command, stdin: Buffer.concat(chunks).toString('utf8'), auth: via };
              this.calls.push(call);
              const r = (await o.onExec?.(call)) ?? {};
              if (r.delayMs) await new Promise((res) => setTimeout(res, r.delayMs));
              try {
                if (r.stdout) stream.write(r.stdout);
                if (r.stderr) stream.stderr.write(r.stderr);
                stream.exit(r.exit ?? 0);
                stream.end();
              } catch {
                /* client went away */
              }
            });
          });
          session.on('shell', (acc) => {
            const stream = acc();
            const prompt = o.prompt ?? 'sw#';
            let buf = '';
            stream.write(`${prompt} `);
            stream.on('data', (d: Buffer) => {
              buf += d.toString();
              let i: number;
              while ((i = buf.indexOf('\n')) >= 0) {
                const line = buf.slice(0, i).replace(/\r$/, '');
                buf = buf.slice(i + 1);
                this.calls.push({ user, kind: 'shell', command: line, stdin: '', auth: via });
                // Consoles echo what is typed, then answer.
                const answer = o.onShellLine?.(line) ?? '';
                stream.write(`${line}\r\n${answer ? answer + '\r\n' : ''}${prompt} `);
              }
            });
            stream.on('end', () => {
              try {
                stream.exit(0);
                stream.end();
              } catch {
                /* gone */
              }
            });
          });
        });
      });
    });
  }

  listen(port: number): Promise<this> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.port = (this.server.address() as { port: number }).port;
        resolve(this);
      });
    });
  }

  close(): Promise<void> {
    for (const c of this.conns) c.end();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  commands(): string[] {
    return this.calls.map((c) => c.command);
  }
}

// ---- in-process CLI -------------------------------------------------------------------

let capturedRun: Run | undefined;
extraCommands.push((run) => {
  capturedRun = run;
  return powerCommand(run);
}, execCommand);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run `pxeherd ARGS --config FILE` in this process (so the test's SSH servers answer it),
 * with power and exec added as src/cli/register.ts adds them.
 */
export async function cli(args: string[], config: string): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  let code = 0;
  const io = { out: (s: string) => void (stdout += s), err: (s: string) => void (stderr += s) };
  const program = buildProgram(io, (c) => (code = c), await loadCommands());
  // reinstall/locate (under node) and deploy (under group) are part of the real command tree.
  void capturedRun;
  const dd = args.indexOf('--');
  const argv = dd >= 0 ? [...args.slice(0, dd), '--config', config, ...args.slice(dd)] : [...args, '--config', config];
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    code = 2;
  }
  return { code, stdout, stderr };
}

// ---- a blackholed address ----------------------------------------------------------------

export const NS = 'phssh0';
export const BLACKHOLE = '10.82.0.9';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' });
}

export function canUseNetns(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to create a network namespace';
  try {
    execFileSync('ip', ['-V'], { stdio: 'pipe' });
  } catch {
    return 'needs iproute2 (ip)';
  }
  return undefined;
}

/**
 * A veth pair into namespace phssh0 (10.82.0.0/28); 10.82.0.9 has a permanent neighbour entry with a MAC
 * nobody owns, so SYNs leave on the veth and vanish in our own namespace: no RST, no ICMP,
 * exactly like a powered-off node behind a switch.
 */
export function makeBlackhole(): () => void {
  const cleanup = () => {
    try {
      ip('link', 'del', 'phsshh0');
    } catch {
      /* already gone */
    }
    try {
      ip('netns', 'del', NS);
    } catch {
      /* already gone */
    }
  };
  cleanup();
  ip('netns', 'add', NS);
  ip('link', 'add', 'phsshh0', 'type', 'veth', 'peer', 'name', 'phsshn0', 'netns', NS);
  ip('addr', 'add', '10.82.0.1/28', 'dev', 'phsshh0');
  ip('link', 'set', 'phsshh0', 'up');
  ip('-n', NS, 'addr', 'add', '10.82.0.2/28', 'dev', 'phsshn0');
  ip('-n', NS, 'link', 'set', 'phsshn0', 'up');
  ip('neigh', 'replace', BLACKHOLE, 'lladdr', '02:00:00:82:00:09', 'dev', 'phsshh0', 'nud', 'permanent');
  return cleanup;
}

export function writeExecutable(file: string, text: string): string {
  fs.writeFileSync(file, text, { mode: 0o755 });
  return file;
}

/** An ed25519 host key ssh2 can read back (its generator writes a broken one now and then). */
function validKey(): string {
  for (;;) {
    const k = ssh2.utils.generateKeyPairSync('ed25519').private;
    if (!(ssh2.utils.parseKey(k) instanceof Error)) return k;
  }
}
