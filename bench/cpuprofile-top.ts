/**
 * Where a Node.js CPU profile (node --cpu-prof) spent its time, as text:
 *
 *   node --import tsx bench/cpuprofile-top.ts FILE.cpuprofile [--from FUNCTION] [--top 30] [--under FUNCTION]
 *
 * Prints self time by function (file:line) and, for the functions named with --under (may be
 * repeated), their inclusive time. --from FUNCTION skips every sample before the first one whose
 * stack contains FUNCTION (e.g. onRequest: leaves out module loading and start-up), so the
 * percentages are of the work under load; --callers FUNCTION lists the stacks leading to its
 * self time. Before: the
 * Idle and GC samples are reported on their own line.
 */
import fs from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--') && !args[args.indexOf(a) - 1]?.startsWith('--'));
if (!file) {
  process.stderr.write('usage: cpuprofile-top.ts FILE.cpuprofile [--from FUNCTION] [--top N] [--under FUNCTION]...\n');
  process.exit(2);
}
const optVal = (n: string) => {
  const i = args.indexOf(`--${n}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const from = optVal('from');
const top = Number(optVal('top') ?? 30);
const unders = args.flatMap((a, i) => (a === '--under' && args[i + 1] ? [args[i + 1]!] : []));
/** --callers FUNCTION: the stacks (5 frames) that lead to FUNCTION's self time. */
const callersOf = optVal('callers');
const callers = new Map<string, number>();

const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const stackOf = (id: number): Node[] => {
  const s: Node[] = [];
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) s.push(byId.get(cur)!);
  return s;
};
const label = (n: Node) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(src|node_modules|dist)\//, '$1/').replace(/^node:/, 'node:')}:${n.callFrame.lineNumber + 1}`;

let started = !from;
const self = new Map<string, number>();
const incl = new Map<string, number>();
let total = 0;
let idle = 0;
for (let i = 0; i < p.samples.length; i++) {
  const dt = p.timeDeltas[i + 1] ?? 0; // the time until the next sample is this sample's
  const stack = stackOf(p.samples[i]!);
  if (!started) {
    if (stack.some((n) => n.callFrame.functionName === from)) started = true;
    else continue;
  }
  const leaf = stack[0]!;
  if (leaf.callFrame.functionName === '(idle)') {
    idle += dt;
    continue;
  }
  total += dt;
  if (callersOf && leaf.callFrame.functionName === callersOf) {
    const k = stack.slice(1, 6).map((n) => n.callFrame.functionName || '(anonymous)').join(' < ');
    callers.set(k, (callers.get(k) ?? 0) + dt);
  }
  self.set(label(leaf), (self.get(label(leaf)) ?? 0) + dt);
  for (const u of unders) if (stack.some((n) => n.callFrame.functionName === u)) incl.set(u, (incl.get(u) ?? 0) + dt);
}
const ms = (us: number) => (us / 1000).toFixed(1);
process.stdout.write(`busy ${ms(total)} ms, idle ${ms(idle)} ms${from ? ` (from the first sample under ${from})` : ''}\n`);
for (const [k, v] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  process.stdout.write(`${ms(v).padStart(8)} ms ${((100 * v) / total).toFixed(1).padStart(5)} %  ${k}\n`);
}
for (const u of unders) process.stdout.write(`under ${u}: ${ms(incl.get(u) ?? 0)} ms (${((100 * (incl.get(u) ?? 0)) / total).toFixed(1)} %)\n`);
for (const [k, v] of [...callers.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8)) process.stdout.write(`caller ${ms(v).padStart(8)} ms  ${k}\n`);
