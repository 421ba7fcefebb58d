import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { InvalidInput } from '../nodes/mac.js';

/**
 * How to put ports into a VLAN on one kind of switch. `exec` kinds take one command per SSH
 * exec channel and report an exit status (Linux, Cumulus, anything with a real shell);
 * `shell` kinds are network-OS consoles: the lines are typed into one interactive session
 * and an output line matching `error` marks the failure (IOS prints "% Invalid input").
 */
export interface SwitchKind {
  name: string;
  mode: 'exec' | 'shell';
  /** Once per switch, before the ports. Placeholders: {{vlan}} {{group}} {{switch}}. */
  begin: string[];
  /** Once per node port. Adds {{port}} {{node}} {{mac}}. */
  port: string[];
  end: string[];
  error?: RegExp;
}

export const BUILTIN_KINDS: Record<string, SwitchKind> = {
  ios: {
    name: 'ios',
    mode: 'shell',
    begin: ['configure terminal', 'vlan {{vlan}}', 'name {{group}}', 'exit'],
    port: ['interface {{port}}', 'description {{node}}', 'switchport mode access', 'switchport access vlan {{vlan}}', 'exit'],
    end: ['end', 'write memory', 'exit'],
    error: /^\s*%\s*(Invalid|Incomplete|Ambiguous|Unknown|Error|Bad).*$/m,
  },
  'linux-bridge': {
    name: 'linux-bridge',
    mode: 'exec',
    begin: [],
    port: ['bridge vlan add dev {{port}} vid {{vlan}} pvid untagged'],
    end: [],
  },
};

const kindSchema = z
  .object({
    mode: z.enum(['exec', 'shell']).default('exec'),
    begin: z.array(z.string()).default([]),
    port: z.array(z.string()).min(1),
    end: z.array(z.string()).default([]),
    error: z.string().optional(),
  })
  .strict();

/** Built-in kinds plus <statedir>/switch-kinds.yaml ({name: {mode, begin, port, end, error}}). */
export function loadKinds(statedir: string): Record<string, SwitchKind> {
  const file = path.join(statedir, 'switch-kinds.yaml');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return { ...BUILTIN_KINDS };
  }
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (e) {
    throw new InvalidInput(`${file}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const res = z.record(z.string().regex(/^[A-Za-z0-9_-]+$/), kindSchema).safeParse(raw);
  if (!res.success) {
    const i = res.error.issues[0]!;
    throw new InvalidInput(`${file}: ${i.path.join('.') || '(top level)'}: ${i.message}`);
  }
  const out = { ...BUILTIN_KINDS };
  for (const [name, k] of Object.entries(res.data)) {
    let error: RegExp | undefined;
    if (k.error) {
      try {
        error = new RegExp(k.error, 'm');
      } catch (e) {
        throw new InvalidInput(`${file}: ${name}.error: ${(e as Error).message}`);
      }
    }
    out[name] = { name, mode: k.mode, begin: k.begin, port: k.port, end: k.end, error };
  }
  return out;
}
