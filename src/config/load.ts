import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { configSchema, type Config } from './schema.js';

/** A configuration problem: one line naming the key and what is wrong. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Validate a parsed object; relative paths are resolved against `baseDir` (the config file's folder). */
export function parseConfig(raw: unknown, baseDir = process.cwd(), source = 'configuration'): Config {
  const input = raw ?? {};
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigError(`${source}: the top level must be a mapping of keys`);
  }
  const res = configSchema.safeParse(input);
  if (!res.success) {
    const issue = res.error.issues[0]!;
    let key = issue.path.join('.');
    let msg = issue.message;
    if (issue.code === 'unrecognized_keys') {
      const k = (issue as { keys: string[] }).keys[0]!;
      key = [...issue.path, k].join('.');
      msg = 'unknown key';
    }
    throw new ConfigError(`${source}: ${key || '(top level)'}: ${msg}`);
  }
  const cfg = res.data;
  cfg.statedir = path.resolve(baseDir, cfg.statedir);
  if (!cfg.server_id) cfg.server_id = os.hostname();
  if (cfg.database.startsWith('sqlite:')) cfg.database = 'sqlite:' + path.resolve(baseDir, cfg.database.slice('sqlite:'.length));
  cfg.tftp.root = cfg.tftp.root ? path.resolve(baseDir, cfg.tftp.root) : path.join(cfg.statedir, 'tftproot');
  cfg.nodescripts.dir = cfg.nodescripts.dir
    ? path.resolve(baseDir, cfg.nodescripts.dir.replace('<statedir>', cfg.statedir))
    : path.join(cfg.statedir, 'nodescripts');
  if (cfg.dhcp.mode === 'full' && !cfg.dhcp.range && cfg.dhcp.subnets.length === 0) {
    throw new ConfigError(`${source}: dhcp.range: required when dhcp.mode is full (e.g. [10.0.0.100, 10.0.0.200])`);
  }
  return cfg;
}

/** Load from --config FILE, else $PXEHERD_CONFIG, else embedded defaults. */
export function loadConfig(file?: string, env: NodeJS.ProcessEnv = process.env): Config {
  const cfg = loadConfigFile(file, env);
  // The database URL carries a password more often than not: the environment may set it.
  if (env.PXEHERD_DATABASE !== undefined) {
    const res = configSchema.shape.database.safeParse(env.PXEHERD_DATABASE);
    if (!res.success) throw new ConfigError(`PXEHERD_DATABASE: ${res.error.issues[0]!.message}`);
    cfg.database = res.data;
  }
  return cfg;
}

function loadConfigFile(file: string | undefined, env: NodeJS.ProcessEnv): Config {
  const f = file ?? env.PXEHERD_CONFIG;
  if (!f) return parseConfig({});
  let text: string;
  try {
    text = fs.readFileSync(f, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read configuration file ${f}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`${f}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  return parseConfig(raw, path.dirname(path.resolve(f)), f);
}
