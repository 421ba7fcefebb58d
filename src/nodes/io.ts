import { InvalidInput, parseMac } from './mac.js';
import type { Node } from './types.js';
import type { NewNode } from '../store/nodes.js';
import { parseBool, parseBootMode } from '../store/nodes.js';

/**
 * Node import/export formats. Parsing is pure and keeps the source line of each record so
 * an import can say exactly where the first bad record is.
 */
export type NodeFormat = 'csv' | 'json' | 'ethers';

export interface ImportRecord {
  line: number;
  node: NewNode;
}

export function formatFromName(file: string): NodeFormat | undefined {
  if (/\.csv$/i.test(file)) return 'csv';
  if (/\.json$/i.test(file)) return 'json';
  if (/(^|\/)ethers$|\.ethers$/i.test(file)) return 'ethers';
  return undefined;
}

export function parseNodes(text: string, format: NodeFormat): ImportRecord[] {
  switch (format) {
    case 'csv':
      return parseCsvNodes(text);
    case 'json':
      return parseJsonNodes(text);
    case 'ethers':
      return parseEthers(text);
  }
}

function lineError(line: number, msg: string): InvalidInput {
  return new InvalidInput(`line ${line}: ${msg}`);
}

function parseEthers(text: string): ImportRecord[] {
  const out: ImportRecord[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const parts = line.split(/\s+/);
    if (parts.length !== 2) throw lineError(i + 1, `expected "MAC name", got "${raw.trim()}"`);
    const mac = parseMac(parts[0]!);
    if (!mac.ok) throw lineError(i + 1, mac.error);
    out.push({ line: i + 1, node: { mac: mac.mac, name: parts[1] } });
  });
  return out;
}

/** RFC 4180 CSV: quoted fields, doubled quotes, commas and newlines inside quotes. */
export function parseCsv(text: string): { line: number; fields: string[] }[] {
  const rows: { line: number; fields: string[] }[] = [];
  let field = '';
  let fields: string[] = [];
  let inQuotes = false;
  let line = 1;
  let rowLine = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inQuotes) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') inQuotes = false;
      else {
        if (c === '\n') line++;
        field += c;
      }
    } else if (c === '"' && field === '') inQuotes = true;
    else if (c === ',') {
      fields.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      fields.push(field);
      if (fields.some((f) => f !== '')) rows.push({ line: rowLine, fields });
      fields = [];
      field = '';
      line++;
      rowLine = line;
    } else field += c;
  }
  if (inQuotes) throw lineError(rowLine, 'unterminated quoted field');
  fields.push(field);
  if (fields.some((f) => f !== '')) rows.push({ line: rowLine, fields });
  return rows;
}

const CSV_COLUMNS = ['mac', 'name', 'group', 'vnfs', 'ip', 'enabled', 'debug', 'boot'];

function parseCsvNodes(text: string): ImportRecord[] {
  const rows = parseCsv(text);
  if (rows.length === 0) return [];
  const header = rows[0]!.fields.map((h) => h.trim().toLowerCase());
  if (!header.includes('mac')) throw lineError(rows[0]!.line, `the header must name a "mac" column (columns: ${CSV_COLUMNS.join(',')},attr.KEY...)`);
  for (const h of header) {
    if (!CSV_COLUMNS.includes(h) && !h.startsWith('attr.')) throw lineError(rows[0]!.line, `unknown column "${h}": use ${CSV_COLUMNS.join(', ')} or attr.KEY`);
  }
  return rows.slice(1).map(({ line, fields }) => {
    if (fields.length !== header.length) throw lineError(line, `expected ${header.length} fields, got ${fields.length}`);
    const rec: Record<string, string> = {};
    header.forEach((h, i) => (rec[h] = fields[i]!.trim()));
    try {
      return { line, node: recordToNode(rec) };
    } catch (e) {
      throw lineError(line, (e as Error).message);
    }
  });
}

function recordToNode(rec: Record<string, string>): NewNode {
  const mac = parseMac(rec.mac ?? '');
  if (!mac.ok) throw new InvalidInput(mac.error);
  const n: NewNode = { mac: mac.mac };
  if (rec.name) n.name = rec.name;
  if (rec.group !== undefined && rec.group !== '') n.group = rec.group;
  if (rec.vnfs !== undefined && rec.vnfs !== '') n.vnfs = rec.vnfs;
  if (rec.ip) n.ip = rec.ip;
  if (rec.enabled) n.enabled = parseBool('enabled', rec.enabled);
  if (rec.debug) n.debug = parseBool('debug', rec.debug);
  if (rec.boot) n.boot = parseBootMode(rec.boot);
  const attrs: Record<string, string> = {};
  for (const [k, v] of Object.entries(rec)) if (k.startsWith('attr.') && v !== '') attrs[k.slice(5)] = v;
  if (Object.keys(attrs).length) n.attrs = attrs;
  return n;
}

function parseJsonNodes(text: string): ImportRecord[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new InvalidInput(`not valid JSON: ${(e as Error).message}`);
  }
  const list = Array.isArray(data) ? data : (data as { nodes?: unknown })?.nodes;
  if (!Array.isArray(list)) throw new InvalidInput('JSON must be an array of nodes or {"nodes": [...]}');
  return list.map((item, i) => {
    const where = `record ${i + 1}`;
    if (!item || typeof item !== 'object' || Array.isArray(item)) throw new InvalidInput(`${where}: not an object`);
    const o = item as Record<string, unknown>;
    const rec: Record<string, string> = {};
    for (const k of ['mac', 'name', 'group', 'vnfs', 'ip', 'boot']) {
      if (o[k] !== undefined && o[k] !== null) {
        if (typeof o[k] !== 'string') throw new InvalidInput(`${where}: "${k}" must be a string`);
        rec[k] = o[k] as string;
      }
    }
    for (const k of ['enabled', 'debug']) if (o[k] !== undefined) rec[k] = String(o[k]);
    if (o.attrs !== undefined) {
      if (!o.attrs || typeof o.attrs !== 'object' || Array.isArray(o.attrs)) throw new InvalidInput(`${where}: "attrs" must be an object`);
      for (const [k, v] of Object.entries(o.attrs as Record<string, unknown>)) rec['attr.' + k] = String(v);
    }
    try {
      return { line: i + 1, node: recordToNode(rec) };
    } catch (e) {
      throw new InvalidInput(`${where}: ${(e as Error).message}`);
    }
  });
}

function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

export function formatNodes(nodes: Node[], format: NodeFormat): string {
  switch (format) {
    case 'ethers':
      return nodes.map((n) => `${n.mac} ${n.name}\n`).join('');
    case 'json':
      return JSON.stringify(nodes.map(exportRecord), null, 2) + '\n';
    case 'csv': {
      const keys = [...new Set(nodes.flatMap((n) => Object.keys(n.attrs)))].sort();
      const head = [...CSV_COLUMNS, ...keys.map((k) => 'attr.' + k)];
      const rows = nodes.map((n) =>
        [n.mac, n.name, n.group, n.vnfs, n.ip, n.enabled ? 'yes' : 'no', n.debug ? 'yes' : 'no', n.boot, ...keys.map((k) => n.attrs[k] ?? '')]
          .map(csvField)
          .join(','),
      );
      return [head.join(','), ...rows].join('\n') + '\n';
    }
  }
}

function exportRecord(n: Node) {
  return { mac: n.mac, name: n.name, group: n.group, vnfs: n.vnfs, ip: n.ip, enabled: n.enabled, debug: n.debug, boot: n.boot, attrs: n.attrs };
}
