import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_NODESCRIPTS_SRC } from '../../src/nodescripts/install.js';
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
