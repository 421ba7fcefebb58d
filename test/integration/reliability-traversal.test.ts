/**
 * Reliability (3): a corpus of path-traversal and hostile-name attempts over TFTP, HTTP
 * (/vnfs, /tftp, /boot, /provision), provisiond and the CLI (node, group and VNFS names,
 * import files). None may leak a byte of a file outside what is meant to be served, nor
 * create a file outside the state directory.
 *
 * Leaks: canary files with a unique token sit next to the state directory and inside it
 * (outside tftproot and vnfs/), and /etc/passwd and the SQLite database are also targets;
 * no response may contain their bytes. Files: after the corpus, nothing new may exist in the
 * test directory outside the state directory, no file carrying the hostile marker name may
 * exist anywhere on /, and `find / -newer <stamp>` (without /proc /sys /dev and the
 * directories other processes churn: /tmp /var /run /work and caches) must find nothing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pxeherdCli, registerSyntheticVnfs, reliabilityFixture, runProbes, stormUnavailable, writeStormConfig } from '../../bench/storm-lab.js';
import type { Probe, ProbeResult } from '../../bench/storm-probe.js';

const why = stormUnavailable(['find']);
const EVIL = 'evil-phrel';
const MAC = '02:85:00:00:00:0c';
const MACHY = '02-85-00-00-00-0c';

const rel = reliabilityFixture({ why, dirPrefix: 'phrel-trav-', poolSize: 20 });
before(rel.setUp);
after(rel.tearDown);

/** Every path in `root` (relative), for before/after comparison. */
function listTree(root: string, skip: string): Set<string> {
  const out = new Set<string>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (p === skip) continue;
      out.add(path.relative(root, p));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

test('50+ traversal and hostile-name attempts over TFTP, HTTP, provisiond and the CLI leak nothing and create nothing outside the state directory', { skip: why, timeout: 180_000 }, async () => {
  const { lab, dir } = rel;
  const { config, statedir } = writeStormConfig(lab, { dir, kernelBytes: 4096, initrdBytes: 4096 });
  registerSyntheticVnfs(dir, config, 4096, 4096);
  assert.equal(pxeherdCli(['node', 'add', MAC, 'target', '--ip', '10.85.4.3'], config).code, 0);
  const token = `CANARY-${crypto.randomBytes(12).toString('hex')}`;
  fs.writeFileSync(path.join(dir, 'canary-phrel.txt'), `${token} outside the state directory\n`);
  fs.writeFileSync(path.join(statedir, 'canary-phrel.txt'), `${token} in the state directory, outside tftproot and vnfs\n`);
  const server = await rel.serve(config, path.join(dir, 'pxeherd.log'));
  const S = lab.serverIp;

  // The import files are the admin's (written before the snapshot); their contents are hostile.
  const kfile = path.join(dir, 'vnfs-src', 'vmlinuz');
  const ifile = path.join(dir, 'vnfs-src', 'initrd.img');
  const csv = path.join(dir, `import.csv`);
  fs.writeFileSync(csv, `mac,name,group,vnfs\n02:85:00:00:01:01,../../${EVIL},cluster,\n02:85:00:00:01:02,ok1,../../${EVIL},\n`);
  const json = path.join(dir, `import.json`);
  fs.writeFileSync(json, JSON.stringify([{ mac: '02:85:00:00:01:03', name: 'ok2', group: `/tmp/${EVIL}` }, { mac: '02:85:00:00:01:04', name: 'ok3', vnfs: `../${EVIL}` }]));
  const ethers = path.join(dir, `import.ethers`);
  fs.writeFileSync(ethers, `02:85:00:00:01:05 ../../${EVIL}\n`);
  const stamp = path.join(dir, 'stamp');
  fs.writeFileSync(stamp, '');
  await new Promise((r) => setTimeout(r, 1100)); // mtime granularity: anything after is "newer"
  const before = listTree(dir, statedir);

  const targets = ['canary-phrel.txt', '../canary-phrel.txt', '../../canary-phrel.txt', 'pxeherd.db', '../pxeherd.db', '../../../../../../etc/passwd'];
  const abs = [path.join(dir, 'canary-phrel.txt'), path.join(statedir, 'canary-phrel.txt'), path.join(statedir, 'pxeherd.db'), '/etc/passwd'];
  const probes: Probe[] = [];
  // TFTP: plain, absolute, encoded, backslashed and NUL-injected names; a few WRQ-like names for files.
  for (const n of [...targets, ...abs, '..\\..\\canary-phrel.txt', '%2e%2e/canary-phrel.txt', 'pxelinux.cfg/../../canary-phrel.txt', 'undionly.kpxe/../../canary-phrel.txt', '....//....//canary-phrel.txt', '//etc/passwd', `../${EVIL}`, 'undionly.kpxe\u0000../../canary-phrel.txt']) {
    probes.push({ kind: 'tftp', host: S, file: n });
  }
  const h = (p: string): Probe => ({ kind: 'http', host: S, port: 8080, path: p, local: '10.85.4.3' });
  for (const t of targets) {
    probes.push(h(`/vnfs/storm/${t}`), h(`/tftp/${t}`), h(`/vnfs/${t}`));
  }
  for (const p of [
    '/vnfs/storm/%2e%2e/%2e%2e/canary-phrel.txt',
    '/vnfs/storm/..%2f..%2fcanary-phrel.txt',
    '/vnfs/storm/..%5c..%5ccanary-phrel.txt',
    '/vnfs/%2e%2e/%2e%2e/canary-phrel.txt',
    '/vnfs/storm/%252e%252e/%252e%252e/canary-phrel.txt',
    `/vnfs/storm/${encodeURIComponent(path.join(dir, 'canary-phrel.txt'))}`,
    '/tftp/%2e%2e/canary-phrel.txt',
    '/tftp/%2e%2e/%2e%2e/canary-phrel.txt',
    '/tftp//etc/passwd',
    '/tftp/%2fetc%2fpasswd',
    `/tftp/${encodeURIComponent(path.join(statedir, 'pxeherd.db'))}`,
    '/tftp/..%2f..%2fcanary-phrel.txt',
    '/boot/..%2f..%2fcanary-phrel.ipxe',
    '/boot/%2e%2e%2f%2e%2e%2fetc%2fpasswd.ipxe',
    '/boot/../../etc/passwd',
    `/boot/${MACHY}.ipxe/../../canary-phrel.txt`,
    `/provision/..%2f..%2f${EVIL}?mac=${MACHY}`,
    `/provision/%2e%2e?mac=${MACHY}`,
    `/provision/init?mac=..%2f..%2f${EVIL}`,
    `/provision/${EVIL}%2f..%2f..?mac=02-85-00-00-00-97`,
    '/provision/../../../etc/passwd?mac=02-85-00-00-00-96',
  ]) {
    probes.push(h(p));
  }
  // An unknown MAC asking for init is registered (200) whatever else it sends; the hostile
  // parameter must simply not become its name (checked below with node list).
  const lenient = new Set([`/provision/init?mac=02-85-00-00-00-99&name=..%2f..%2f${EVIL}`, `/provision/init?mac=02-85-00-00-00-98&hostname=..%2f${EVIL}`]);
  for (const p of lenient) probes.push(h(p));
  // provisiond: hostile state words, node names and ids.
  for (const line of [
    `../../${EVIL} nodeid=02:85:00:00:00:95\n`,
    `init nodeid=../../${EVIL}\n`,
    `init nodename=../../../${EVIL}\n`,
    `init nodeid=02:85:00:00:00:94 nodename=../../${EVIL}\n`,
    `${'a'.repeat(5000)}/../${EVIL}\n`,
    `log ../../${EVIL}\n`,
    `init/../../${EVIL} nodeid=02:85:00:00:00:93\n`,
  ]) {
    probes.push({ kind: 'tcp', host: S, port: 987, line, local: '10.85.4.3' });
  }
  const results: ProbeResult[] = await runProbes(lab, probes);

  // CLI: hostile node, group and VNFS names, and import files carrying them.
  const cli: string[][] = [
    ['node', 'add', '02:85:00:00:02:01', `../../${EVIL}`],
    ['node', 'add', '02:85:00:00:02:02', `/tmp/${EVIL}`],
    ['node', 'add', '02:85:00:00:02:03', 'okname', '--group', `../../${EVIL}`],
    ['node', 'add', '02:85:00:00:02:04', 'okname2', '--vnfs', `../../${EVIL}`],
    ['node', 'set', 'group', `../../${EVIL}`, 'target'],
    ['node', 'set', 'vnfs', `../${EVIL}`, 'target'],
    ['node', 'set', 'name', `../${EVIL}`, 'target'],
    ['group', 'set', `../../${EVIL}`, 'k', 'v'],
    ['vnfs', 'add', `../../${EVIL}`, '--kernel', kfile, '--initrd', ifile],
    ['vnfs', 'add', `/tmp/${EVIL}`, '--kernel', kfile, '--initrd', ifile],
    ['vnfs', 'add', `..`, '--kernel', kfile, '--initrd', ifile],
    ['vnfs', 'delete', '..'],
    ['vnfs', 'delete', `../../${EVIL}`],
    ['node', 'import', csv],
    ['node', 'import', json],
    ['node', 'import', ethers],
    ['script', 'list', `../../${EVIL}`],
    ['script', 'render', 'target', '--state', `../../${EVIL}`],
  ];
  const cliResults = cli.map((args) => ({ args, r: pxeherdCli(args, config) }));
  const total = results.length + cliResults.length;
  assert.ok(total >= 50, `the corpus holds at least 50 attempts (${total})`);

  // 1. Nothing leaked.
  for (const r of results) {
    const what = r.probe.kind === 'http' ? `GET ${r.probe.path}` : r.probe.kind === 'tcp' ? `provisiond ${JSON.stringify(r.probe.line.slice(0, 80))}` : `TFTP RRQ ${JSON.stringify(r.probe.file)}`;
    assert.ok(!r.body.includes(token), `${what}: no canary bytes in the answer`);
    assert.ok(!r.body.includes('root:x:0:0'), `${what}: no /etc/passwd bytes`);
    assert.ok(!r.body.includes('SQLite format 3'), `${what}: no database bytes`);
    if (r.probe.kind === 'tftp') assert.notEqual(r.status, 0, `${what}: refused with a TFTP error (${r.error})`);
    if (r.probe.kind === 'http' && !lenient.has(r.probe.path)) assert.ok(r.status >= 400, `${what}: refused (got ${r.status})`);
  }
  for (const { args, r } of cliResults) {
    assert.ok(!r.stdout.includes(token) && !r.stderr.includes(token), `pxeherd ${args.join(' ')}: no canary bytes`);
    if (args[0] !== 'node' || args[1] !== 'import' || r.code !== 0) continue;
    // An import that succeeded must not have taken a hostile name.
    assert.doesNotMatch(r.stdout, new RegExp(EVIL), `pxeherd ${args.join(' ')} took no hostile name`);
  }
  const list = pxeherdCli(['node', 'list', '--json'], config);
  assert.equal(list.code, 0);
  assert.doesNotMatch(list.stdout, new RegExp(EVIL), 'no node, group or VNFS took a hostile name');
  const hostileAccepted = cliResults.filter(({ r }) => r.code === 0);
  assert.deepEqual(
    hostileAccepted.map(({ args }) => args.join(' ')),
    [],
    'every hostile CLI command is refused with a non-zero exit',
  );

  // 2. Nothing created outside the state directory.
  await server.stop();
  const afterTree = listTree(dir, statedir);
  const fresh = [...afterTree].filter((p) => !before.has(p));
  assert.deepEqual(fresh.filter((p) => p !== 'pxeherd.log'), [], 'no new file next to the state directory (only the server log)');
  const named = execFileSync('find', ['/', '-xdev', '(', '-path', '/proc', '-o', '-path', '/sys', '-o', '-path', '/dev', ')', '-prune', '-o', '-name', `*${EVIL}*`, '-print'], { encoding: 'utf8', maxBuffer: 64 << 20 }).trim();
  assert.equal(named, '', `no file carrying the hostile name anywhere on /:\n${named}`);
  const churn = ['/proc', '/sys', '/dev', '/tmp', '/var', '/run', '/work', '/root/.cache', '/root/.npm', '/root/.config', '/root/.local'];
  const prune = churn.flatMap((p, i) => (i ? ['-o', '-path', p] : ['-path', p]));
  const newer = execFileSync('find', ['/', '-xdev', '(', ...prune, ')', '-prune', '-o', '-newer', stamp, '-print'], { encoding: 'utf8', maxBuffer: 64 << 20 })
    .trim()
    .split('\n')
    .filter(Boolean);
  assert.deepEqual(newer, [], 'find / -newer finds nothing changed outside the churned directories');
  // Inside the state directory, no file carries the hostile name either (names were refused, not sanitised into place).
  const inside = execFileSync('find', [statedir, '-name', `*${EVIL}*`], { encoding: 'utf8' }).trim();
  assert.equal(inside, '', `no hostile name inside the state directory either:\n${inside}`);
  process.stderr.write(`# reliability traversal: ${results.length} network + ${cliResults.length} CLI attempts, nothing leaked or created\n`);
});
