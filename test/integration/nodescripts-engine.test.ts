import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync, rmSync, statSync, chmodSync, symlinkSync } from 'node:fs';
import { execFileSync, spawnSync, execFile } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import type { BootEvent, Node } from '../../src/nodes/types.js';
import { NodescriptEngine, type EngineOptions } from '../../src/nodescripts/engine.js';
import { ChildProcessSpawner, type Spawner } from '../../src/nodescripts/spawner.js';
import { HelperSpawner, DEFAULT_HELPER_PATH } from '../../src/nodescripts/helper-spawner.js';
import { installDefaultNodescripts, DEFAULT_NODESCRIPTS_SRC } from '../../src/nodescripts/install.js';
import { STREAM_END, STREAM_START, abortLines } from '../../src/nodescripts/stream.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'pxeherd-ns-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

let helperBuilt = false;
before(() => {
  // The native spawner is part of the build; build it here so the test covers both spawners.
  const r = spawnSync('make', ['-s', '-C', path.dirname(DEFAULT_HELPER_PATH)], { encoding: 'utf8' });
  helperBuilt = r.status === 0 && existsSync(DEFAULT_HELPER_PATH);
});

function node(over: Partial<Node> = {}): Node {
  return {
    mac: '52:54:00:00:00:01', name: 'n0001', group: 'compute', vnfs: 'centos', enabled: true, debug: false,
    state: '', ip: '10.0.0.21', lastContact: null, boot: 'provision', attrs: {}, createdAt: 0, updatedAt: 0, ...over,
  };
}

let treeNo = 0;
/** Build a nodescripts dir: { 'init/all/10-a': 'script body' | { body, mode } } */
function tree(files: Record<string, string | { body: string; mode: number }>): string {
  const root = path.join(tmp, `tree${treeNo++}`);
  for (const [rel, v] of Object.entries(files)) {
    const p = path.join(root, rel);
    mkdirSync(path.dirname(p), { recursive: true });
    const { body, mode } = typeof v === 'string' ? { body: v, mode: 0o755 } : v;
    writeFileSync(p, body);
    chmodSync(p, mode);
  }
  mkdirSync(root, { recursive: true });
  return root;
}

const spawners: { name: string; make: () => Spawner; skip: () => string | false }[] = [
  { name: 'child_process', make: () => new ChildProcessSpawner(), skip: () => false },
  { name: 'native helper', make: () => new HelperSpawner({ helpers: 2 }), skip: () => (helperBuilt ? false : 'native spawner could not be built (no cc?)') },
];

function engine(dir: string, spawner: Spawner, over: Partial<EngineOptions> = {}): { eng: NodescriptEngine; events: BootEvent[] } {
  const events: BootEvent[] = [];
  const eng = new NodescriptEngine({
    dir, statedir: tmp, vnfs: { method: 'http', master: '10.0.0.1:8080', prefix: '/px' }, timeoutSeconds: 10, maxParallel: 4,
    spawner, events: { record: (e) => void events.push(e) }, killGraceMs: 300, ...over,
  });
  return { eng, events };
}

/** Async: the HTTP server under test lives in this process, spawnSync would deadlock it. */
function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv }): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { ...opts, encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const echo = (s: string) => `#!/bin/sh\necho 'echo ${s}'\n`;

for (const sp of spawners) {
  test(`[${sp.name}] real directories: merged by name, more specific place wins, byte order, non-executables skipped`, async (t) => {
    if (sp.skip()) return t.skip(sp.skip() as string);
    const dir = tree({
      'init/all/10-base': echo('all-10'),
      'init/all/20-over': echo('all-20'),
      'init/all/30-noexec': { body: echo('noexec'), mode: 0o644 },
      'init/all/.hidden': echo('hidden'),
      'init/all/40-bak~': echo('bak'),
      'init/all/Z-upper': echo('upper'),
      'init/vnfs/centos/05-vnfs': echo('vnfs-05'),
      'init/vnfs/centos/10-base': echo('vnfs-10'),
      'init/group/compute/20-over': echo('group-20'),
      'init/node/n0001/20-over': echo('node-20'),
      'init/node/n0002/50-other': echo('other-node'),
      'init/group/storage/60-other': echo('other-group'),
    });
    mkdirSync(path.join(dir, 'init/all/45-a-directory'));
    const { eng } = engine(dir, sp.make());
    t.after(() => eng.close());
    const r = await eng.renderScript(node(), 'init');
    assert.equal(r.ok, true);
    assert.equal(r.text, `${STREAM_START}echo vnfs-05\necho all-10\necho node-20\necho upper\n${STREAM_END}`);
    const list = await eng.listScripts(node(), 'init');
    assert.deepEqual(list.order.map((s) => `${s.where}/${s.name}`), ['vnfs/centos/05-vnfs', 'all/10-base', 'node/n0001/20-over', 'all/Z-upper']);
    assert.deepEqual(
      list.skipped.map((s) => `${s.where}/${s.name}`),
      // by name, then most specific place first
      ['vnfs/centos/10-base', 'group/compute/20-over', 'all/20-over', 'all/30-noexec'],
    );
    assert.match(list.skipped.find((s) => s.name === '30-noexec')!.reason, /not executable/);
    // another node of another group sees its own scripts only
    const r2 = await eng.renderScript(node({ name: 'n0002', group: 'storage', vnfs: '' }), 'init');
    assert.equal(r2.text, `${STREAM_START}echo all-10\necho all-20\necho other-node\necho other-group\necho upper\n${STREAM_END}`);
  });

  test(`[${sp.name}] every variable reaches the script, nothing else leaks from the server`, async (t) => {
    if (sp.skip()) return t.skip(sp.skip() as string);
    process.env.PXEHERD_SECRET_TEST = 'leak';
    t.after(() => delete process.env.PXEHERD_SECRET_TEST);
    const dir = tree({
      'init/all/10-env': `#!/bin/sh\nfor v in STATE NODENAME NODEID VNFS GROUPNAME ENABLED DEBUG IPADDR STATEDIR VNFSMETHOD VNFSMASTER VNFSPREFIX PATH NODETOKEN ATTR_RACK ATTR_ROLE; do eval "printf '# %s=%s\\\\n' \\"\\$v\\" \\"\\$$v\\""; done\n/usr/bin/env | sed 's/^/#env /' | sort\n`,
    });
    const { eng } = engine(dir, sp.make());
    t.after(() => eng.close());
    const n = node({ debug: true, enabled: false, attrs: { rack: 'r12', role: "it's" } });
    const r = await eng.renderScript(n, 'init', { ip: '10.0.0.77', token: 'tok.en-1' });
    assert.equal(r.ok, true, r.failure?.reason);
    const vars = Object.fromEntries(r.text.split('\n').filter((l) => l.startsWith('# ') && l.includes('=')).map((l) => [l.slice(2, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    assert.deepEqual(vars, {
      STATE: 'init', NODENAME: 'n0001', NODEID: '52:54:00:00:00:01', VNFS: 'centos', GROUPNAME: 'compute', ENABLED: '0', DEBUG: '1',
      IPADDR: '10.0.0.77', STATEDIR: path.resolve(tmp), VNFSMETHOD: 'http', VNFSMASTER: '10.0.0.1:8080', VNFSPREFIX: '/px',
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', NODETOKEN: 'tok.en-1', ATTR_RACK: 'r12', ATTR_ROLE: "it's",
    });
    const envKeys = r.text.split('\n').filter((l) => l.startsWith('#env ')).map((l) => l.slice(5, l.indexOf('='))).filter((k) => !['PWD', 'SHLVL', '_', 'OLDPWD'].includes(k));
    assert.deepEqual(envKeys.sort(), ['ATTR_RACK', 'ATTR_ROLE', 'DEBUG', 'ENABLED', 'GROUPNAME', 'IPADDR', 'NODEID', 'NODENAME', 'NODETOKEN', 'PATH', 'STATE', 'STATEDIR', 'VNFS', 'VNFSMASTER', 'VNFSMETHOD', 'VNFSPREFIX', 'VNFSREV', 'VNFSROOT']);
  });

  test(`[${sp.name}] timeout kills the whole process group, including a child that ignores SIGTERM`, async (t) => {
    if (sp.skip()) return t.skip(sp.skip() as string);
    const pids = path.join(tmp, `pids-${sp.name.replace(/ /g, '')}`);
    const dir = tree({
      'init/all/10-first': echo('first'),
      'init/all/20-hang': `#!/bin/sh\nsh -c 'trap "" TERM; echo $$ > ${pids}.child; exec sleep 60' &\necho $$ > ${pids}.parent\necho 'echo partial'\nsleep 60\n`,
      'init/all/30-never': `#!/bin/sh\ntouch ${pids}.never\n`,
    });
    const { eng, events } = engine(dir, sp.make(), { timeoutSeconds: 1 });
    t.after(() => eng.close());
    const t0 = Date.now();
    const r = await eng.renderScript(node(), 'init');
    const took = Date.now() - t0;
    assert.equal(r.ok, false);
    assert.ok(took < 4000, `took ${took} ms`);
    assert.equal(r.failure?.timedOut, true);
    assert.equal(r.text, `${STREAM_START}echo first\n${abortLines('init/all/20-hang', 'timed out after 1 s')}${STREAM_END}`);
    assert.equal(existsSync(`${pids}.never`), false, 'scripts after a failure must not run (on_error abort)');
    const gone = (pid: number) => {
      // A killed process re-parented to a PID 1 that does not reap stays a zombie: it is dead.
      // The native helper is a subreaper and reaps it, so there it must be fully gone.
      try {
        process.kill(pid, 0);
      } catch {
        return true;
      }
      if (sp.name === 'native helper') return false;
      try {
        return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
      } catch {
        return true;
      }
    };
    const parent = Number(readFileSync(`${pids}.parent`, 'utf8'));
    const child = Number(readFileSync(`${pids}.child`, 'utf8'));
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(gone(parent), `script ${parent} still running`);
    assert.ok(gone(child), `TERM-ignoring child ${child} still running`);
    if (sp.name === 'native helper') {
      // no zombies either: kill -0 from a shell fails for both
      assert.notEqual(spawnSync('sh', ['-c', `kill -0 ${child}`]).status, 0);
      assert.notEqual(spawnSync('sh', ['-c', `kill -0 ${parent}`]).status, 0);
    }
    const fail = events.find((e) => e.kind === 'nodescript.fail')!;
    assert.equal(fail.detail!.script, 'init/all/20-hang');
    assert.equal(fail.detail!.timedOut, true);
  });

  test(`[${sp.name}] a failing script ends the stream with a clear error (abort), stderr goes to the event log`, async (t) => {
    if (sp.skip()) return t.skip(sp.skip() as string);
    const marker = path.join(tmp, `after-${sp.name.replace(/ /g, '')}`);
    const dir = tree({
      'init/all/10-ok': echo('ok'),
      'init/all/20-bad': `#!/bin/sh\necho 'echo half'\necho boom >&2\nexit 3\n`,
      'init/all/30-after': `#!/bin/sh\ntouch ${marker}\necho 'echo after'\n`,
    });
    const { eng, events } = engine(dir, sp.make());
    t.after(() => eng.close());
    const r = await eng.renderScript(node(), 'init');
    assert.equal(r.ok, false);
    assert.equal(r.text, `${STREAM_START}echo ok\n${abortLines('init/all/20-bad', 'exit code 3')}${STREAM_END}`);
    assert.equal(existsSync(marker), false);
    const fail = events.find((e) => e.kind === 'nodescript.fail')!;
    assert.deepEqual({ ...fail.detail, pid: 0 }, { script: 'init/all/20-bad', reason: 'exit code 3', code: 3, signal: null, timedOut: false, stderr: 'boom\n', pid: 0, stderrTruncated: false, onError: 'abort' });
    assert.equal(fail.mac, '52:54:00:00:00:01');
    // what the node's shell does with it
    const sh = spawnSync('sh', ['-c', r.text], { encoding: 'utf8' });
    assert.equal(sh.status, 1);
    assert.equal(sh.stdout, 'ok\n');
    assert.equal(sh.stderr, 'pxeherd: nodescript init/all/20-bad failed: exit code 3\n');
  });

  test(`[${sp.name}] on_error continue carries on like Perceus, with a comment line and the event`, async (t) => {
    if (sp.skip()) return t.skip(sp.skip() as string);
    const dir = tree({
      'init/all/10-ok': echo('ok'),
      'init/all/20-bad': `#!/bin/sh\necho 'echo half'\nexit 3\n`,
      'init/all/25-noexec': { body: '#!/nonexistent/interpreter\n', mode: 0o755 },
      'init/all/27-segv': `#!/bin/sh\nkill -SEGV $$\n`,
      'init/all/30-after': echo('after'),
    });
    const { eng, events } = engine(dir, sp.make(), { onError: 'continue' });
    t.after(() => eng.close());
    const r = await eng.renderScript(node(), 'init');
    assert.equal(r.ok, false);
    const lines = r.text.split('\n');
    assert.deepEqual(lines[0], '# NODESCRIPT START');
    assert.equal(lines[1], 'echo ok');
    assert.match(lines[2]!, /^# pxeherd: nodescript init\/all\/20-bad failed: exit code 3 \(continuing/);
    assert.equal(lines[3], 'echo half');
    assert.match(lines[4]!, /^# pxeherd: nodescript init\/all\/25-noexec failed: cannot execute: .*ENOENT/);
    assert.match(lines[5]!, /^# pxeherd: nodescript init\/all\/27-segv failed: killed by SIGSEGV/);
    assert.deepEqual(lines.slice(6), ['echo after', '# NODESCRIPT END', '']);
    assert.deepEqual(events.filter((e) => e.kind === 'nodescript.fail').map((e) => e.detail!.script), ['init/all/20-bad', 'init/all/25-noexec', 'init/all/27-segv']);
    assert.equal(r.summary.scripts, 5);
  });

  test(`[${sp.name}] stray background jobs are killed when the script exits; stderr is bounded`, async (t) => {
    if (sp.skip()) return t.skip(sp.skip() as string);
    const dir = tree({
      'init/all/10-bg': `#!/bin/sh\nsleep 30 &\necho 'echo bg'\nhead -c 200000 /dev/zero | tr '\\0' x >&2\n`,
    });
    const { eng, events } = engine(dir, sp.make());
    t.after(() => eng.close());
    const t0 = Date.now();
    const r = await eng.renderScript(node(), 'init');
    assert.ok(Date.now() - t0 < 2500, `took ${Date.now() - t0} ms: the background job held the stream`);
    assert.equal(r.text, `${STREAM_START}echo bg\n${STREAM_END}`);
    const ev = events.find((e) => e.kind === 'nodescript.stderr')!;
    assert.equal((ev.detail!.stderr as string).length, 64 * 1024);
    assert.equal(ev.detail!.truncated, true);
  });

  test(`[${sp.name}] nodescripts.max_parallel bounds scripts running at once across requests`, async (t) => {
    if (sp.skip()) return t.skip(sp.skip() as string);
    const log = path.join(tmp, `par-${sp.name.replace(/ /g, '')}.log`);
    const dir = tree({
      'init/all/10-a': `#!/bin/sh\necho + >> ${log}\nsleep 0.2\necho - >> ${log}\n`,
      'init/all/20-b': `#!/bin/sh\necho + >> ${log}\nsleep 0.2\necho - >> ${log}\n`,
    });
    const { eng } = engine(dir, sp.make(), { maxParallel: 2 });
    t.after(() => eng.close());
    const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => eng.renderScript(node({ name: `n${i}` }), 'init')));
    assert.deepEqual(rs.filter((r) => !r.ok).map((r) => r.failure), [], 'every render succeeded');
    let cur = 0;
    let max = 0;
    for (const c of readFileSync(log, 'utf8').split('\n')) {
      if (c === '+') max = Math.max(max, ++cur);
      if (c === '-') cur--;
    }
    assert.equal(max, 2, 'expected exactly 2 scripts at once');
  });
}

test('default nodescripts: valid sh for sample nodes, debug tracing, static address from attributes', async (t) => {
  const dir = path.join(tmp, 'defaults');
  await installDefaultNodescripts(DEFAULT_NODESCRIPTS_SRC, dir);
  const { eng } = engine(dir, new ChildProcessSpawner());
  const samples: Node[] = [
    node(),
    node({ debug: true, attrs: { address: '10.0.0.50', netmask: '255.255.254.0', gateway: '10.0.0.1', interface: 'eth1' } }),
    node({ name: 'n-x', group: 'g', vnfs: '', ip: '', attrs: { address: '10.0.0.51', netmask: '16' } }),
  ];
  for (const n of samples) {
    for (const state of ['init', 'ready']) {
      const r = await eng.renderScript(n, state);
      assert.equal(r.ok, true, `${state} for ${n.name}: ${r.failure?.reason} ${r.failure?.stderr}`);
      const check = spawnSync('sh', ['-n'], { input: r.text, encoding: 'utf8' });
      assert.equal(check.status, 0, `sh -n failed for ${state}/${n.name}: ${check.stderr}\n${r.text}`);
      const bb = spawnSync('busybox', ['sh', '-n'], { input: r.text, encoding: 'utf8' });
      assert.equal(bb.status, 0, `busybox sh -n failed: ${bb.stderr}`);
    }
  }
  const dbg = (await eng.renderScript(samples[1]!, 'init')).text;
  assert.match(dbg, /^set -x$/m);
  assert.match(dbg, /^ip addr add 10\.0\.0\.50\/23 dev eth1 /m);
  assert.match(dbg, /^ip route del default 2>\/dev\/null; ip route add default via 10\.0\.0\.1 dev eth1$/m);
  assert.match(dbg, /^hostname 'n0001'$/m);
  assert.match((await eng.renderScript(samples[2]!, 'init')).text, /^ip addr add 10\.0\.0\.51\/16 dev eth0 /m);
  assert.doesNotMatch((await eng.renderScript(samples[0]!, 'init')).text, /set -x|ip addr/);
  // a typo in an attribute fails on the master, naming the script and the attribute
  const bad = await eng.renderScript(node({ attrs: { address: '10.0.0.300' } }), 'init');
  assert.equal(bad.ok, false);
  assert.equal(bad.failure?.script, 'init/all/40-address');
  assert.match(bad.failure!.stderr, /address "10.0.0.300" is not an IPv4 address/);
  t.after(() => eng.close());
});

test('default nodescripts: a disabled node is refused by its own shell', async (t) => {
  const dir = path.join(tmp, 'defaults-disabled');
  await installDefaultNodescripts(DEFAULT_NODESCRIPTS_SRC, dir);
  const { eng } = engine(dir, new ChildProcessSpawner());
  t.after(() => eng.close());
  const r = await eng.renderScript(node({ enabled: false }), 'init');
  // `hostname` must never run on this (test) machine: replace it with a marker.
  const sh = spawnSync('sh', ['-c', `hostname() { echo HOSTNAME-CHANGED; }\n${r.text}`], { encoding: 'utf8' });
  assert.equal(sh.status, 1);
  assert.match(sh.stderr, /node n0001 \(52:54:00:00:00:01\) is disabled/);
  assert.doesNotMatch(sh.stdout, /HOSTNAME-CHANGED/);
});

test('default nodescripts: getfile fetches from the master with busybox wget', async (t) => {
  const http = await import('node:http');
  const server = http.createServer((req, res) => {
    if (req.url === '/px/vnfs/centos/hello.txt') res.end('hello from master\n');
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(19871, '127.0.0.1', r));
  t.after(() => server.close());
  const dir = path.join(tmp, 'defaults-getfile');
  await installDefaultNodescripts(DEFAULT_NODESCRIPTS_SRC, dir);
  // only 00-init: the functions; the rest would change this machine's hostname
  for (const f of ['40-address', '49-hostname', '99-last']) chmodSync(path.join(dir, 'init/all', f), 0o644);
  const { eng } = engine(dir, new ChildProcessSpawner(), { vnfs: { method: 'http', master: '127.0.0.1:19871', prefix: '/px' } });
  t.after(() => eng.close());
  const r = await eng.renderScript(node(), 'init');
  const work = mkdtempSync(path.join(tmp, 'node-'));
  // The node side: busybox sh with busybox's own wget and timeout first in PATH.
  const bin = path.join(work, '.bin');
  mkdirSync(bin);
  for (const a of ['wget', 'timeout']) symlinkSync('/bin/busybox', path.join(bin, a));
  const sh = await run('busybox', ['sh', '-c', `${r.text}\ngetfile vnfs/$VNFS/hello.txt && cat hello.txt && getfile vnfs/missing out.txt; echo rc=$?; ls`], {
    cwd: work,
    env: { PATH: `${bin}:/usr/bin:/bin` },
  });
  assert.match(sh.stdout, /hello from master\nrc=1\nhello.txt\n$/);
  assert.match(sh.stderr, /getfile: cannot fetch http:\/\/127.0.0.1:19871\/px\/vnfs\/missing/);
});

test('pxeherd-when: a script whose header does not hold is never started, is listed as skipped with the reason, and records no event', async (t) => {
  const ran = path.join(tmp, 'when-ran');
  const bad = path.join(tmp, 'when-bad-ran');
  const dir = tree({
    'init/all/10-root': `#!/bin/sh\n# needs a root filesystem\n# pxeherd-when: VNFSROOT=1\necho root >> ${ran}\necho 'echo root'\n`,
    'init/all/20-always': echo('always'),
    'init/all/30-addr': `#!/bin/sh\n# pxeherd-when: ATTR_ADDRESS!= ATTR_MODE!=off|no\necho addr >> ${ran}\necho 'echo addr'\n`,
  });
  let root = false;
  const { eng, events } = engine(dir, new ChildProcessSpawner(), { imageFor: () => ({ root, rev: root ? 2 : undefined }) });
  t.after(() => eng.close());

  const l = await eng.listScripts(node(), 'init');
  assert.deepEqual(l.order.map((s) => s.name), ['20-always']);
  assert.deepEqual(l.skipped.map((s) => [s.name, s.where, s.reason]), [
    ['10-root', 'all', "pxeherd-when: VNFSROOT=1, node has VNFSROOT=''"],
    ['30-addr', 'all', "pxeherd-when: ATTR_ADDRESS!=, node has ATTR_ADDRESS=''"],
  ]);
  assert.deepEqual(l.problems, []);
  const r = await eng.renderScript(node(), 'init');
  assert.equal(r.text, `${STREAM_START}echo always\n${STREAM_END}`);
  assert.equal(existsSync(ran), false, 'a skipped script must not be started');
  assert.equal(r.summary.scripts, 1);
  assert.deepEqual(r.summary.skipped.map((s) => [s.name, s.kind]), [['10-root', 'when'], ['30-addr', 'when']]);
  assert.deepEqual(events, [], 'no event per skipped script');

  // The environment decides, per request: attributes as given to the run, the image as resolved.
  const r2 = await eng.renderScript(node(), 'init', { attrs: { address: '10.0.0.5', mode: 'off' } });
  assert.match(r2.summary.skipped.find((s) => s.name === '30-addr')!.reason, /^pxeherd-when: ATTR_MODE!=off\|no, node has ATTR_MODE='off'$/);
  root = true;
  const r3 = await eng.renderScript(node(), 'init', { attrs: { address: '10.0.0.5' } });
  assert.equal(r3.text, `${STREAM_START}echo root\necho always\necho addr\n${STREAM_END}`);
  assert.equal(readFileSync(ran, 'utf8'), 'root\naddr\n');

  // Headers are read once per version of the file: an edit counts at once (same size, in place).
  const p = path.join(dir, 'init/all/10-root');
  writeFileSync(p, readFileSync(p, 'utf8').replace('VNFSROOT=1', 'VNFSROOT=9'));
  assert.deepEqual((await eng.listScripts(node({ attrs: { address: '10.0.0.5' } }), 'init')).skipped.map((s) => s.reason), ["pxeherd-when: VNFSROOT=9, node has VNFSROOT='1'"]);
  // ... and so does a file renamed over it (new inode), with a header that is now malformed:
  // it is a problem in the listing and fails at run time, without being started.
  writeFileSync(`${p}.new`, `#!/bin/sh\n# pxeherd-when: VNFS_ROOT=1\necho x >> ${bad}\n`, { mode: 0o755 });
  execFileSync('mv', [`${p}.new`, p]);
  const l2 = await eng.listScripts(node(), 'init');
  assert.equal(l2.order[0]!.name, '10-root');
  assert.equal(l2.order[0]!.error, 'bad pxeherd header: line 2: pxeherd-when: unknown variable VNFS_ROOT: did you mean VNFSROOT?');
  assert.deepEqual(l2.problems, [`${p}: bad pxeherd header: line 2: pxeherd-when: unknown variable VNFS_ROOT: did you mean VNFSROOT?`]);
  const r4 = await eng.renderScript(node(), 'init');
  assert.equal(r4.ok, false);
  assert.equal(existsSync(bad), false, 'a script with a malformed header must not be started');
  assert.equal(r4.text, `${STREAM_START}${abortLines('init/all/10-root', 'bad pxeherd header: line 2: pxeherd-when: unknown variable VNFS_ROOT: did you mean VNFSROOT?')}${STREAM_END}`);
  assert.deepEqual(events.map((e) => e.kind), ['nodescript.fail']);
  assert.match(String((events[0]!.detail as { reason: string }).reason), /line 2/);
});

test('installDefaultNodescripts copies missing files with their modes and never overwrites an admin edit', async () => {
  const dest = path.join(tmp, 'install');
  const first = await installDefaultNodescripts(DEFAULT_NODESCRIPTS_SRC, dest);
  assert.ok(first.some((p) => p.endsWith('init/all/00-init')));
  assert.equal(statSync(path.join(dest, 'init/all/00-init')).mode & 0o777, statSync(path.join(DEFAULT_NODESCRIPTS_SRC, 'init/all/00-init')).mode & 0o777);
  writeFileSync(path.join(dest, 'init/all/49-hostname'), '#!/bin/sh\n# mine\n');
  chmodSync(path.join(dest, 'init/all/99-last'), 0o644); // admin disabled it
  rmSync(path.join(dest, 'ready/all/00-checkin'));
  const second = await installDefaultNodescripts(DEFAULT_NODESCRIPTS_SRC, dest);
  assert.deepEqual(second, [path.join(dest, 'ready/all/00-checkin')]);
  assert.equal(readFileSync(path.join(dest, 'init/all/49-hostname'), 'utf8'), '#!/bin/sh\n# mine\n');
  assert.equal(statSync(path.join(dest, 'init/all/99-last')).mode & 0o777, 0o644);
  assert.deepEqual(await installDefaultNodescripts(DEFAULT_NODESCRIPTS_SRC, dest), []);
});

test('shipped default scripts are executable and pass sh -n themselves', () => {
  for (const rel of ['init/all/00-init', 'init/all/40-address', 'init/all/49-hostname', 'init/all/99-last', 'ready/all/00-checkin']) {
    const p = path.join(DEFAULT_NODESCRIPTS_SRC, rel);
    assert.ok(statSync(p).mode & 0o100, `${rel} not executable`);
    execFileSync('sh', ['-n', p]);
  }
});

test('without the native helper the engine falls back to child_process with one clear log line', async (t) => {
  const { createSpawner } = await import('../../src/nodescripts/helper-spawner.js');
  const logs: string[] = [];
  const missing = path.join(tmp, 'no-such-helper');
  const s1 = createSpawner({ helperPath: missing, log: (m) => logs.push(m) });
  assert.equal(s1.kind, 'child_process');
  assert.equal(logs.length, 1);
  assert.match(logs[0]!, /spawner helper .*no-such-helper not found, using child_process .*make -C native\/spawner/);
  // a helper that is configured but cannot start: the script still runs, once, via child_process
  const counter = path.join(tmp, 'fallback-count');
  const dir = tree({ 'init/all/10-a': `#!/bin/sh\necho x >> ${counter}\necho 'echo fine'\n` });
  const hs = new HelperSpawner({ path: missing, helpers: 1, log: (m) => logs.push(m) });
  const { eng } = engine(dir, hs);
  t.after(() => eng.close());
  const r = await eng.renderScript(node(), 'init');
  assert.equal(r.text, `${STREAM_START}echo fine\n${STREAM_END}`);
  assert.equal(readFileSync(counter, 'utf8'), 'x\n');
  assert.match(logs[1]!, /using child_process from now on/);
});
