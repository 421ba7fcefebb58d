import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { InvalidInput } from '../nodes/mac.js';
import { parsePort } from '../remote/target.js';

/** A switch pxeherd logs in to. Credentials are file names in <statedir>/secrets/. */
export interface SwitchDef {
  name: string;
  host: string;
  sshPort: number;
  user: string;
  kind: string;
  passwordFile?: string;
  keyFile?: string;
  /** Where the definition came from, for messages. */
  source: string;
}

const entry = z
  .object({
    host: z.string().min(1).optional(),
    ssh_port: z.number().int().min(1).max(65535).optional(),
    user: z.string().min(1).optional(),
    kind: z.string().min(1).optional(),
    password_file: z.string().min(1).optional(),
    key_file: z.string().min(1).optional(),
  })
  .strict();

export type SwitchesFile = Record<string, z.infer<typeof entry>>;

export function switchesPath(statedir: string): string {
  return path.join(statedir, 'switches.yaml');
}

/** <statedir>/switches.yaml: {name: {host, ssh_port, user, kind, password_file, key_file}}; absent = {}. */
export function loadSwitches(statedir: string): SwitchesFile {
  const file = switchesPath(statedir);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (e) {
    throw new InvalidInput(`${file}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const res = z.record(z.string(), entry).safeParse(raw);
  if (!res.success) {
    const i = res.error.issues[0]!;
    throw new InvalidInput(`${file}: ${i.path.join('.') || '(top level)'}: ${i.message}`);
  }
  return res.data;
}

/**
 * The switch named by a node's `switch` attribute: switches.yaml first, then the node's
 * (or its group's) `switch_host`, `switch_ssh_port`, `switch_user`, `switch_kind`.
 */
export function resolveSwitch(name: string, file: SwitchesFile, attrs: Record<string, string>, fileLabel = 'switches.yaml'): SwitchDef {
  const e = file[name];
  const kind = e?.kind ?? attrs.switch_kind;
  if (!kind) throw new InvalidInput(`switch ${name} has no kind: add "${name}: {host: ..., kind: ios|linux-bridge}" to ${fileLabel} or set attr switch_kind`, 'switch_kind');
  return {
    name,
    host: e?.host ?? attrs.switch_host ?? name,
    sshPort: e?.ssh_port ?? parsePort(attrs.switch_ssh_port, 'switch_ssh_port', 22),
    user: e?.user ?? attrs.switch_user ?? 'root',
    kind,
    passwordFile: e?.password_file ?? attrs.switch_password_file,
    keyFile: e?.key_file ?? attrs.switch_key_file,
    source: e ? fileLabel : 'attributes',
  };
}
