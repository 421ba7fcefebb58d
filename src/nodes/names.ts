import { InvalidInput } from './mac.js';

/**
 * Node, group and VNFS names become directory names (nodescripts/<state>/node/<name>/,
 * <statedir>/vnfs/<name>/). Perceus let a node named "../../usr/sbin" reach a directory the
 * master executed from; this pattern makes that impossible.
 */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export type NameKind = 'node' | 'group' | 'vnfs';

export function nameError(kind: NameKind, name: string): string | undefined {
  if (typeof name !== 'string' || !NAME_RE.test(name) || name.includes('..')) {
    return `${kind} name "${name}" is not allowed: use 1-63 letters, digits, '.', '_', '-', starting with a letter or digit, without '..'`;
  }
  return undefined;
}

export function validateName(kind: NameKind, name: string): string {
  const err = nameError(kind, name);
  if (err) throw new InvalidInput(err, kind);
  return name;
}

/** Attribute keys become environment variable names (ATTR_<KEY>) on the master. */
const ATTR_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

export function validateAttrKey(key: string): string {
  if (!ATTR_KEY_RE.test(key)) {
    throw new InvalidInput(
      `attribute key "${key}" is not allowed: use letters, digits and '_', starting with a letter or '_' (it becomes ATTR_<KEY>)`,
      'key',
    );
  }
  return key;
}

/** State words name directories under nodescripts/ and travel on the provisiond wire. */
const STATE_RE = /^[a-z][a-z0-9_-]{0,31}$/;

export function stateError(state: string): string | undefined {
  if (typeof state !== 'string' || !STATE_RE.test(state)) {
    return `state "${state}" is not allowed: use a lower-case word matching ^[a-z][a-z0-9_-]{0,31}$`;
  }
  return undefined;
}
