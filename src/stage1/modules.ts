import { moduleName } from './elf.js';

export interface ModuleFile {
  /** Path of the .ko (or .ko.xz/.ko.zst/.ko.gz) file. */
  path: string;
  depends: string[];
}

export type ModuleOrder = { ok: true; order: string[] } | { ok: false; error: string };

/**
 * The wanted modules and everything their depends= names, dependencies first (insmod
 * order). Pure: `lookup` answers for one module name, or undefined when the package has
 * no such module (it may be built into the kernel: then it is skipped if `builtin` says so).
 */
export function moduleLoadOrder(wanted: string[], lookup: (name: string) => ModuleFile | undefined, builtin: (name: string) => boolean = () => false): ModuleOrder {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (raw: string, chain: string[]): string | undefined => {
    const name = moduleName(raw);
    const s = state.get(name);
    if (s === 'done') return undefined;
    if (s === 'visiting') return `dependency cycle: ${[...chain, name].join(' -> ')}`;
    const m = lookup(name);
    if (!m) {
      if (builtin(name)) {
        state.set(name, 'done');
        return undefined;
      }
      return chain.length ? `module ${name} (needed by ${chain[chain.length - 1]}) is not in the kernel package` : `module ${name} is not in the kernel package`;
    }
    state.set(name, 'visiting');
    for (const d of m.depends) {
      const err = visit(d, [...chain, name]);
      if (err) return err;
    }
    state.set(name, 'done');
    order.push(name);
    return undefined;
  };
  for (const w of wanted) {
    const err = visit(w, []);
    if (err) return { ok: false, error: err };
  }
  return { ok: true, order };
}
