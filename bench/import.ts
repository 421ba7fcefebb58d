// Importing 10 000 nodes and listing them with a query, through the built CLI binary
// (process start included, as an admin sees it). Usage: node --import tsx bench/import.ts [--nodes N] [--runs R]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../src/store/store.js';
import { NodeService } from '../src/nodes/service.js';
import { parseConfig } from '../src/config/load.js';
import { parseSelector, selectNodes } from '../src/nodes/select.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const N = opt('--nodes', 10000);
const RUNS = opt('--runs', 3);
const cli = path.resolve(import.meta.dirname, '..', 'dist', 'cli.js');
if (!fs.existsSync(cli)) throw new Error('run "npm run build" first');

function time(argv: string[], config: string): { ms: number; out: string } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [cli, ...argv, '--config', config], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`);
  return { ms, out: r.stdout };
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const imports: number[] = [];
const queries: number[] = [];
const lists: number[] = [];
const noop: number[] = [];
const inproc: number[] = [];
const scans: number[] = [];
let matched = 0;
for (let run = 0; run < RUNS; run++) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-bench-import-'));
  const config = path.join(dir, 'c.yaml');
  fs.writeFileSync(config, `statedir: ${dir}/var\n`);
  const csv = path.join(dir, 'nodes.csv');
  const rows = ['mac,name,group,attr.rack,attr.cores'];
  for (let i = 0; i < N; i++) {
    const mac = ['52', '54', (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff, '01'].map((x) => (typeof x === 'number' ? x.toString(16).padStart(2, '0') : x)).join(':');
    rows.push(`${mac},n${String(i).padStart(5, '0')},${i % 10 === 0 ? 'gpu' : 'compute'},r${i % 40},${i % 3 === 0 ? 64 : 16}`);
  }
  fs.writeFileSync(csv, rows.join('\n') + '\n');
  noop.push(time(['group', 'list'], config).ms); // process start + open, for reference
  imports.push(time(['node', 'import', csv], config).ms);
  const q = time(['node', 'list', 'group:compute and attr:rack,r1* and attr:cores>=32 and not state:ready', '--json'], config);
  queries.push(q.ms);
  matched = JSON.parse(q.out).nodes.length;
  lists.push(time(['node', 'list', '--json'], config).ms);
  {
    // The same query in-process: what the API and the server pay, without process start.
    const store = Store.open(path.join(dir, 'var'));
    const svc = new NodeService(store, parseConfig({ statedir: path.join(dir, 'var') }));
    const t0 = process.hrtime.bigint();
    const got = svc.list(['group:compute and attr:rack,r1* and attr:cores>=32 and not state:ready']);
    inproc.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (got.length !== matched) throw new Error('in-process query disagrees with the CLI');
    // The reference: what select() did before queries compiled to SQL (load every node, filter).
    const t1 = process.hrtime.bigint();
    const scanned = selectNodes(parseSelector(['group:compute and attr:rack,r1* and attr:cores>=32 and not state:ready']), store.nodes.all());
    scans.push(Number(process.hrtime.bigint() - t1) / 1e6);
    if (scanned.length !== matched) throw new Error('the SQL query and the full scan disagree');
    store.close();
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(`nodes: ${N}, runs: ${RUNS} (median, wall clock of the pxeherd command incl. process start)`);
console.log(`process start + open db (group list):   ${median(noop).toFixed(0)} ms`);
console.log(`node import ${N} from CSV:               ${median(imports).toFixed(0)} ms  (target <= 2000 ms)`);
console.log(`node list QUERY --json (${matched} match):     ${median(queries).toFixed(0)} ms  (target <= 200 ms)`);
console.log(`the same query in-process (SQL):          ${median(inproc).toFixed(0)} ms  (target <= 50 ms at 100 000)`);
console.log(`the same query as a full scan (reference): ${median(scans).toFixed(0)} ms  (ratio ${(median(inproc) / median(scans)).toFixed(2)})`);
console.log(`node list --json (all ${N}):             ${median(lists).toFixed(0)} ms`);
