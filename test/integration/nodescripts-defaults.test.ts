import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_NODESCRIPTS_SRC, SHIPPED_MANIFEST, installDefaultNodescripts, parseShippedManifest } from '../../src/nodescripts/install.js';
import { parseHeader, whenFails } from '../../src/nodescripts/when.js';
import { makeStateDir, pxeherd } from '../helpers/cli.js';
import { scriptEnv, type EnvContext } from '../../src/nodescripts/env.js';
import type { Node } from '../../src/nodes/types.js';

/*
 * The default nodescripts run on the master once per node and state, so they are written with
 * shell builtins only (no $(...), no sed, no cat). This checks that they still print exactly
 * what the earlier, forking versions printed (test/fixtures/nodescripts-forking, taken from
 * commit 27d3c5a; both later print values with printf '%s\n' instead of echo, which mangled
 * backslashes) for hostile values, that they start no process, and that every value reaches
 * the node's shell unchanged.
 */

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/nodescripts-forking');
const SCRIPTS = ['init/all/00-init', 'init/all/40-address', 'init/all/49-hostname', 'init/all/99-last', 'ready/all/00-checkin'];

// Quotes, blanks, newlines (trailing ones too: the old $(...) dropped them), backslash
// sequences that dash's echo interprets, printf directives, shell syntax, and UTF-8 whose
// bytes include dash's internal control bytes (0x81-0x88, CTLESC and friends).
const HOSTILE = [
  '',
  "'",
  "''",
  "a'b",
  "'a'",
  "it's a 'test' of ''' quotes'",
  ' ',
  '  a  b  ',
  '\t',
  '\n',
  'a\n',
  'a\n\n\n',
  '\na',
  "a'\n",
  "'\n'\n",
  'line1\nline2',
  '\r\n',
  '\\',
  '\\\\',
  'a\\nb',
  'x\\cy',
  '\\0101',
  "\\'",
  '%s',
  '%d %% %b %n',
  '$HOME ${PATH} `id` $(id)',
  '"',
  '* ? [a] ~',
  'ñ 日本 \u0081\u0082\u0083\u0084\u0085\u0086\u0087\u0088',
  "\u0081'\u0088",
  "'".repeat(200),
  `${"ab'c\\d\n".repeat(500)}end`,
];

const ctx: EnvContext = { statedir: '/var/lib/pxeherd', vnfsMethod: 'http', vnfsMaster: '10.0.0.1:8080', vnfsPrefix: '/px', path: '' };

function node(over: Partial<Node> = {}): Node {
  return {
    mac: '52:54:00:00:00:01', name: 'n0001', group: 'compute', vnfs: 'centos', enabled: true, debug: false,
    state: '', ip: '10.0.0.21', lastContact: null, boot: 'provision', attrs: {}, createdAt: 0, updatedAt: 0, ...over,
  };
}

interface Out {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

/** The shipped script is run as the engine runs it (executed, #!/bin/sh); the fixture by /bin/sh. */
function runScript(file: string, env: Record<string, string>, direct: boolean): Out {
  const r = direct ? spawnSync(file, [], { env, cwd: os.tmpdir() }) : spawnSync('/bin/sh', [file], { env, cwd: os.tmpdir() });
  assert.equal(r.error, undefined, `${file}: ${r.error?.message}`);
  // dash prefixes its own errors with "<script>: <line>: ", which differ between the versions.
  const stderr = r.stderr.toString('latin1').split(`${file}: `).join('SCRIPT: ').replace(/^SCRIPT: \d+: /gm, 'SCRIPT: N: ');
  return { status: r.status, stdout: r.stdout, stderr };
}

/** Runs both versions of each script in `scripts` with `env`; returns how many were compared. */
function assertSame(env: Record<string, string>, label: string, scripts = SCRIPTS): number {
  let compared = 0;
  for (const rel of scripts) {
    const before = runScript(path.join(FIXTURES, rel), env, false);
    const now = runScript(path.join(DEFAULT_NODESCRIPTS_SRC, rel), env, true);
    const what = `${rel} with ${label}: ${JSON.stringify(env).slice(0, 600)}`;
    assert.equal(now.status, before.status, `exit status differs for ${what}`);
    assert.ok(now.stdout.equals(before.stdout), `stdout differs for ${what}\nbefore: ${JSON.stringify(before.stdout.toString('latin1'))}\nnow:    ${JSON.stringify(now.stdout.toString('latin1'))}`);
    assert.equal(now.stderr, before.stderr, `stderr differs for ${what}`);
    compared++;
  }
  return compared;
}

test('default nodescripts print byte for byte what the forking versions printed, for hostile values', () => {
  let compared = 0;
  for (const v of HOSTILE) {
    // Every value that reaches the node quoted, through the engine's own environment builder.
    for (const enabled of [true, false]) {
      const env = scriptEnv(node({ name: v, mac: v, group: v, vnfs: v, enabled, debug: true }), 'init', {}, { ...ctx, vnfsMaster: v, vnfsPrefix: v }, v, v);
      compared += assertSame(env, `all identity values, enabled=${enabled}`);
    }
    // The master's URL is rewritten first (scheme added when missing).
    for (const master of [`h${v}`, `http://${v}`, `${v}://x`]) {
      compared += assertSame(scriptEnv(node(), 'init', {}, { ...ctx, vnfsMaster: master }, undefined, ''), `vnfs.master ${JSON.stringify(master)}`, ['init/all/00-init']);
    }
    // Attributes (only the scripts that read them): checked on the master, quoted into error
    // messages, or defaulted.
    for (const [k, attrs] of Object.entries({
      address: { address: v },
      netmask: { address: '10.0.0.50', netmask: v },
      gateway: { address: '10.0.0.50', gateway: v },
      interface: { address: '10.0.0.50', interface: v },
    })) {
      compared += assertSame(scriptEnv(node(), 'init', attrs, ctx), `attribute ${k}`, ['init/all/40-address']);
    }
    compared += assertSame(scriptEnv(node(), 'ready', { checkin_interval: v }, ctx), 'attribute checkin_interval', ['ready/all/00-checkin']);
  }
  // Values the address script accepts or refuses, including numbers test(1) cannot read.
  const masks = ['255.255.255.0', '255.255.254.0', '24', '024', '0', '32', '33', '0.0.0.0', '255.255.255.255', '255.0.255.0', '255.255.255', '1.2.3.4.5', '99999999999999999999999', '-1'];
  for (const netmask of masks) {
    for (const gateway of ['', '10.0.0.1', '10.0.0.256']) {
      compared += assertSame(scriptEnv(node(), 'init', { address: '10.0.0.50', netmask, gateway, interface: 'eth1' }, ctx), 'address attributes', ['init/all/40-address']);
    }
  }
  for (const address of ['10.0.0.1', '010.0.0.1', '1.2.3', '1..2.3', '.1.2.3', '256.1.1.1', '1.2.3.4 ', 'a.b.c.d']) {
    compared += assertSame(scriptEnv(node(), 'init', { address }, ctx), 'address', ['init/all/40-address']);
  }
  for (const checkin_interval of ['', '0', '00', '60', '3600', '-5', '1e3', ' 60']) {
    compared += assertSame(scriptEnv(node(), 'ready', { checkin_interval }, ctx, undefined, 'tok.en'), 'checkin interval', ['ready/all/00-checkin']);
  }
  // Unset rather than empty variables, and flags that are neither 0 nor 1.
  compared += assertSame({ PATH: '/usr/bin:/bin' }, 'an empty environment');
  for (const flag of ['', ' 1', '1 ', 'yes', '01']) {
    compared += assertSame({ ...scriptEnv(node(), 'init', {}, ctx), ENABLED: flag, DEBUG: flag }, `ENABLED=DEBUG=${JSON.stringify(flag)}`);
  }
  // A locale does not change the output either (the engine passes none).
  for (const v of HOSTILE.slice(0, 12).concat(HOSTILE.slice(-4))) {
    const env = { ...scriptEnv(node({ name: v }), 'init', {}, ctx, undefined, v), LC_ALL: 'C.UTF-8' };
    compared += assertSame(env, 'LC_ALL=C.UTF-8');
  }
  assert.ok(compared > 700, `only ${compared} comparisons`);
});

test('the fixtures are the forking versions this test is meant to compare with', () => {
  // If a fixture were replaced by a copy of the new script, the comparison above would prove
  // nothing: the old versions quote with sed inside $(...) and print with cat.
  for (const rel of ['init/all/00-init', 'init/all/49-hostname', 'init/all/99-last', 'ready/all/00-checkin']) {
    const text = readFileSync(path.join(FIXTURES, rel), 'utf8');
    assert.match(text, /\| sed "s\/'\//, rel);
  }
  assert.match(readFileSync(path.join(FIXTURES, 'init/all/40-address'), 'utf8'), /prefix=\$\(prefix_len /);
  assert.match(readFileSync(path.join(FIXTURES, 'ready/all/00-checkin'), 'utf8'), /^cat <<'NODE'$/m);
});

test('default nodescripts start no process (strace)', (t) => {
  const probe = spawnSync('strace', ['-f', '-qq', '-e', 'trace=none', 'true']);
  if (probe.error || probe.status !== 0) return t.skip('strace is not available or not permitted here');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pxeherd-nsfork-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const envs = [
    scriptEnv(node({ name: "it's", debug: true }), 'init', { address: '10.0.0.50', netmask: '255.255.254.0', gateway: '10.0.0.1', checkin_interval: '60' }, ctx, undefined, "t'k\n"),
    scriptEnv(node({ enabled: false }), 'init', { address: '10.0.0.50', netmask: '23' }, { ...ctx, vnfsMaster: 'http://m/' }),
  ];
  for (const env of envs) {
    for (const rel of SCRIPTS) {
      const log = path.join(tmp, 'trace');
      const r = spawnSync('strace', ['-f', '-qq', '-o', log, '-e', 'trace=execve,fork,vfork,clone,clone3', path.join(DEFAULT_NODESCRIPTS_SRC, rel)], { env });
      assert.equal(r.status, 0, `${rel}: ${r.stderr}`);
      const calls = readFileSync(log, 'utf8').split('\n').filter((l) => /\b(execve|fork|vfork|clone|clone3)\(/.test(l));
      // The one execve is strace starting the script itself.
      assert.equal(calls.length, 1, `${rel} started processes:\n${calls.join('\n')}`);
      assert.match(calls[0]!, /execve\(/);
    }
  }
});

test('every value reaches the node unchanged, backslashes included, in dash and in busybox sh', () => {
  const shells: string[][] = [['/bin/sh']];
  if (spawnSync('busybox', ['sh', '-c', 'true']).status === 0) shells.push(['busybox', 'sh']);
  let checked = 0;
  for (const v of HOSTILE) {
    const want = v.replace(/\n+$/, ''); // as $(...) on the master always did
    const env = scriptEnv(node({ name: v, mac: v, group: v, vnfs: v }), 'init', {}, { ...ctx, vnfsMaster: `http://${v}`, vnfsPrefix: v }, v, v);
    const init = runScript(path.join(DEFAULT_NODESCRIPTS_SRC, 'init/all/00-init'), env, true);
    const last = runScript(path.join(DEFAULT_NODESCRIPTS_SRC, 'init/all/99-last'), env, true);
    assert.equal(init.status, 0, init.stderr);
    for (const sh of shells) {
      // What the node runs, then a probe that prints each variable NUL-terminated.
      const probe = Buffer.concat([init.stdout, Buffer.from(`printf '%s\\0' "$NODENAME" "$NODEID" "$GROUPNAME" "$VNFS" "$PXEHERD_MASTER" "$PXEHERD_PREFIX"\n`)]);
      const r = spawnSync(sh[0]!, [...sh.slice(1), '-s'], { input: probe, env: { PATH: '/usr/bin:/bin' } });
      assert.equal(r.status, 0, `${sh.join(' ')}: ${r.stderr}`);
      const got = r.stdout.toString('utf8').split('\0').slice(0, 6);
      assert.deepEqual(got, [want, want, want, want, `http://${v}`.replace(/\n+$/, ''), want], `${sh.join(' ')} with ${JSON.stringify(v).slice(0, 200)}`);
      const msg = spawnSync(sh[0]!, [...sh.slice(1), '-s'], { input: last.stdout, env: { PATH: '/usr/bin:/bin' } });
      assert.equal(msg.stdout.toString('utf8'), `pxeherd: init nodescripts for ${v} done\n`);
      checked++;
    }
  }
  assert.ok(checked >= HOSTILE.length);
});

/** Environments that decide each shipped header both ways. */
function sampleEnvs(): [string, Record<string, string>][] {
  const rootImage = { root: true, rev: 3 };
  return [
    ['kernel+initrd VNFS, no attributes', scriptEnv(node(), 'init', {}, ctx, undefined, '', { root: false })],
    ['root filesystem, static address', scriptEnv(node(), 'init', { address: '10.0.0.9', netmask: '24' }, ctx, undefined, '', rootImage)],
    ['wipe_on_boot=no, install=disk without a plan', scriptEnv(node(), 'init', { install: 'disk', wipe_on_boot: 'no' }, ctx, undefined, '', { ...rootImage, install: { INSTALL: 'disk', INSTALL_ERROR: 'no disk matches' } })],
    ['wipe_on_boot=off, install=disk, no root filesystem', scriptEnv(node(), 'init', { install: 'disk', wipe_on_boot: 'off' }, ctx, undefined, '', { root: false, install: { INSTALL: 'disk', INSTALL_ERROR: 'needs a root filesystem' } })],
    ['wipe_on_boot=quick, a disk plan', scriptEnv(node(), 'init', { install: 'disk', wipe_on_boot: 'quick' }, ctx, undefined, '', { ...rootImage, install: { INSTALL: 'disk', INSTALL_DISK: '/dev/vda', INSTALL_FIRMWARE: 'bios' } })],
  ];
}

test('pxeherd-when: wherever a shipped header skips a script, the script run by hand prints nothing and exits 0', () => {
  // The header is a declaration of the script's own guard: the engine may skip the fork only
  // where the script would have done nothing. (The reverse need not hold: 40-address with
  // an invalid address runs and fails, which is right.)
  const dir = path.join(DEFAULT_NODESCRIPTS_SRC, 'init', 'all');
  let skipped = 0;
  const seen = new Set<string>();
  for (const [label, env] of sampleEnvs()) {
    for (const name of readdirSync(dir).sort()) {
      const file = path.join(dir, name);
      const h = parseHeader(readFileSync(file, 'utf8'));
      assert.deepEqual(h.errors, [], name);
      if (!h.when.length || !whenFails(h.when, env)) continue;
      const r = spawnSync(file, [], { env, cwd: os.tmpdir() });
      assert.equal(r.status, 0, `${name} with ${label}: ${r.stderr}`);
      assert.equal(r.stdout.length, 0, `${name} with ${label} printed: ${r.stdout}`);
      skipped++;
      seen.add(name);
    }
  }
  assert.equal(seen.size, 15, `every header skips in some sample: ${[...seen].join(' ')}`);
  assert.ok(skipped > 30);
});

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

test(`${SHIPPED_MANIFEST} lists the current version of every shipped nodescript`, () => {
  const shipped = parseShippedManifest(readFileSync(path.join(DEFAULT_NODESCRIPTS_SRC, SHIPPED_MANIFEST), 'utf8'));
  const walk = (rel: string): string[] =>
    readdirSync(path.join(DEFAULT_NODESCRIPTS_SRC, rel), { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(path.join(rel, e.name)) : e.name === SHIPPED_MANIFEST ? [] : [path.join(rel, e.name)],
    );
  const files = walk('');
  assert.ok(files.length >= 19);
  for (const rel of files) {
    const h = sha256(readFileSync(path.join(DEFAULT_NODESCRIPTS_SRC, rel)));
    assert.ok(shipped.get(rel)?.has(h), `${rel} (sha256 ${h}) is not in nodescripts/${SHIPPED_MANIFEST}: add it (see the file's header) so that installations update it`);
  }
  assert.throws(() => parseShippedManifest('abc  init/all/00-init\n', 'M'), /M line 1: expected "SHA256  PATH"/);
});

test('existing installations get the new defaults where the admin never changed them, and nothing else', async (t) => {
  const dest = mkdtempSync(path.join(os.tmpdir(), 'pxeherd-nsupd-'));
  t.after(() => rmSync(dest, { recursive: true, force: true }));
  await installDefaultNodescripts(DEFAULT_NODESCRIPTS_SRC, dest);
  assert.deepEqual(readdirSync(dest).sort(), ['init', 'ready'], `${SHIPPED_MANIFEST} is not copied`);
  // The previous shipped versions: the current ones without their pxeherd-when: line.
  const old = (name: string) => readFileSync(path.join(DEFAULT_NODESCRIPTS_SRC, 'init/all', name), 'utf8').replace(/^# pxeherd-when: .*\n/m, '');
  const at = (name: string) => path.join(dest, 'init/all', name);
  writeFileSync(at('05-stateless'), old('05-stateless')); // untouched old default
  writeFileSync(at('10-vnfs-root'), old('10-vnfs-root'));
  chmodSync(at('10-vnfs-root'), 0o644); // untouched old default, disabled by the admin
  writeFileSync(at('50-os-hostname'), old('50-os-hostname') + '# my note\n'); // the admin's edit
  const edited = readFileSync(at('50-os-hostname'));
  rmSync(at('95-switch-root'));
  mkdirSync(at('95-switch-root')); // a directory where a default was: the admin's
  const updated = await installDefaultNodescripts(DEFAULT_NODESCRIPTS_SRC, dest);
  assert.deepEqual(updated.sort(), [at('05-stateless'), at('10-vnfs-root')]);
  for (const name of ['05-stateless', '10-vnfs-root']) {
    assert.equal(readFileSync(at(name), 'utf8'), readFileSync(path.join(DEFAULT_NODESCRIPTS_SRC, 'init/all', name), 'utf8'), name);
  }
  assert.equal(statSync(at('05-stateless')).mode & 0o777, 0o755);
  assert.equal(statSync(at('10-vnfs-root')).mode & 0o777, 0o644, 'the admin disabled it: it stays disabled');
  assert.ok(readFileSync(at('50-os-hostname')).equals(edited), 'an edited default is never replaced');
  assert.ok(statSync(at('95-switch-root')).isDirectory());
  assert.deepEqual(readdirSync(path.join(dest, 'init/all')).filter((n) => n.startsWith('.')), [], 'no temporary file left');
  assert.deepEqual(await installDefaultNodescripts(DEFAULT_NODESCRIPTS_SRC, dest), []);
});

test('pxeherd script list shows scripts skipped by pxeherd-when: with the reason, and a malformed header with its file and line', (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  const c = { config: s.config };
  assert.equal(pxeherd(['node', 'add', '52:54:00:aa:00:01', 'n0001', '--set', 'address=10.0.0.9'], c).code, 0);
  const r = pxeherd(['script', 'list', 'n0001', '--json'], c);
  assert.equal(r.code, 0, r.stderr);
  const l = JSON.parse(r.stdout) as { order: { name: string }[]; skipped: { name: string; reason: string }[]; problems: string[] };
  assert.deepEqual(l.order.map((x) => x.name), ['00-init', '40-address', '49-hostname', '99-last']);
  assert.equal(l.skipped.find((x) => x.name === '05-stateless')?.reason, "pxeherd-when: VNFSROOT=1, node has VNFSROOT=''");
  assert.equal(l.skipped.find((x) => x.name === '08-disk-plan')?.reason, "pxeherd-when: INSTALL=disk, node has INSTALL=''");
  assert.equal(l.skipped.length, 14);
  assert.deepEqual(l.problems, []);
  // An admin's script with a typo in its header: a problem naming file and line, and a failure at run time.
  const bad = path.join(s.statedir, 'nodescripts/init/node/n0001/30-mine');
  mkdirSync(path.dirname(bad), { recursive: true });
  writeFileSync(bad, '#!/bin/sh\n# mine\n# pxeherd-when: VNFSROOT=1 GROUP=compute\necho "echo mine"\n', { mode: 0o755 });
  const text = pxeherd(['script', 'list', 'n0001'], c);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /05-stateless\s+all\s+pxeherd-when: VNFSROOT=1, node has VNFSROOT=''/);
  assert.ok(text.stdout.includes(`${bad}: bad pxeherd header: line 3: pxeherd-when: unknown variable GROUP`), text.stdout);
  const render = pxeherd(['script', 'render', 'n0001'], c);
  assert.equal(render.code, 1);
  assert.match(render.stdout, /nodescript init\/node\/n0001\/30-mine failed: bad pxeherd header: line 3: pxeherd-when: unknown variable GROUP/);
});
