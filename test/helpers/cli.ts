import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli.js');
/** The installed `pxeherd` command: a launcher that starts node/group/vnfs/image from the CLI's snapshot, everything else from dist/cli.js. */
export const LAUNCHER = path.join(ROOT, 'bin', 'pxeherd');

export interface StateDir {
  dir: string;
  config: string;
  statedir: string;
  cleanup(): void;
}

/** A temporary state directory with a config that turns the privileged services off. */
export function makeStateDir(extraYaml = ''): StateDir {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-test-'));
  const statedir = path.join(dir, 'var');
  const config = path.join(dir, 'pxeherd.yaml');
  fs.writeFileSync(config, `statedir: ${statedir}\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nhttp: { port: 0 }\nadmin: { port: 0 }\n${extraYaml}`);
  return { dir, config, statedir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function pxeherd(args: string[], opts: { config?: string; input?: string; env?: NodeJS.ProcessEnv } = {}): CliResult {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`);
  const full = opts.config ? [...args, '--config', opts.config] : args;
  const r = spawnSync(LAUNCHER, full, { encoding: 'utf8', input: opts.input, env: { ...process.env, ...opts.env } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Every row of every table: compared before and after a rejected command. */
export function dumpDb(statedir: string): string {
  const file = path.join(statedir, 'pxeherd.db');
  if (!fs.existsSync(file)) return '(no database)';
  const db = new Database(file, { readonly: true });
  try {
    const tables = db.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all();
    const out: Record<string, unknown[]> = {};
    for (const t of tables) out[t.name] = db.prepare(`SELECT * FROM "${t.name}" ORDER BY 1`).all();
    return JSON.stringify(out);
  } finally {
    db.close();
  }
}
