import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseHeader, whenFails, nameProblem, HEAD_BYTES } from '../../src/nodescripts/when.js';
import { selectByHeaders } from '../../src/nodescripts/engine.js';
import { scriptEnv } from '../../src/nodescripts/env.js';
import { DEFAULT_NODESCRIPTS_SRC } from '../../src/nodescripts/install.js';

const sh = (...lines: string[]) => ['#!/bin/sh', ...lines, 'echo hi', ''].join('\n');

test('pxeherd-when: conditions are parsed from the comment block at the top', () => {
  const h = parseHeader(sh('# what it does', '', '# pxeherd-when: VNFSROOT=1 INSTALL=disk', '#pxeherd-when:   INSTALL_ERROR= ATTR_MODE!=a|b|'));
  assert.deepEqual(h.errors, []);
  assert.deepEqual(
    h.when.map((c) => [c.name, c.negate, c.values, c.line, c.text]),
    [
      ['VNFSROOT', false, ['1'], 4, 'VNFSROOT=1'],
      ['INSTALL', false, ['disk'], 4, 'INSTALL=disk'],
      ['INSTALL_ERROR', false, [''], 5, 'INSTALL_ERROR='],
      ['ATTR_MODE', true, ['a', 'b', ''], 5, 'ATTR_MODE!=a|b|'],
    ],
  );
});

test('a script without headers, a binary and prose mentioning pxeherd- have no conditions and no errors', () => {
  assert.deepEqual(parseHeader(sh('# plain')), { when: [], errors: [] });
  assert.deepEqual(parseHeader('\x7fELF\x02\x01# pxeherd-when: X=1\n'), { when: [], errors: [] });
  assert.deepEqual(parseHeader(sh('#   pxeherd-checkin.service (oneshot, at boot)', '# see /usr/lib/pxeherd/pxeherd-checkin: it runs')), { when: [], errors: [] });
});

test('every condition must hold; unset is empty; != negates; | lists alternatives', () => {
  const { when } = parseHeader(sh('# pxeherd-when: VNFSROOT=1 INSTALL_ERROR= ATTR_WIPE_ON_BOOT!=|no|off'));
  const env = { VNFSROOT: '1', ATTR_WIPE_ON_BOOT: 'quick' };
  assert.equal(whenFails(when, env), undefined);
  assert.equal(whenFails(when, { ...env, VNFSROOT: '' }), "pxeherd-when: VNFSROOT=1, node has VNFSROOT=''");
  assert.equal(whenFails(when, { ...env, VNFSROOT: '0' }), "pxeherd-when: VNFSROOT=1, node has VNFSROOT='0'");
  assert.match(whenFails(when, { ...env, INSTALL_ERROR: 'no disk matches' })!, /^pxeherd-when: INSTALL_ERROR=, node has INSTALL_ERROR='no disk matches'$/);
  assert.equal(whenFails(when, { VNFSROOT: '1' }), "pxeherd-when: ATTR_WIPE_ON_BOOT!=|no|off, node has ATTR_WIPE_ON_BOOT=''");
  assert.equal(whenFails(when, { ...env, ATTR_WIPE_ON_BOOT: 'off' }), "pxeherd-when: ATTR_WIPE_ON_BOOT!=|no|off, node has ATTR_WIPE_ON_BOOT='off'");
  // Long values are cut in the message, quotes in them are shown for sh.
  const long = whenFails(parseHeader(sh('# pxeherd-when: INSTALL_ERROR=')).when, { INSTALL_ERROR: `it's ${'x'.repeat(100)}` })!;
  assert.ok(long.length < 120 && long.includes(`'it'\\''s`), long);
});

test('malformed headers are errors naming the line: unknown directive, typo, no colon, quotes, unknown variable', () => {
  const cases: [string, RegExp][] = [
    ['# pxeherd-wen: VNFSROOT=1', /unknown header pxeherd-wen:/],
    ['# PXEHERD-WHEN: VNFSROOT=1', /unknown header pxeherd-WHEN:/],
    ['# pxeherd-when VNFSROOT=1', /needs a colon/],
    ['# pxeherd-when:', /has no condition/],
    ['# pxeherd-when: VNFSROOT', /"VNFSROOT" is not NAME=VALUE/],
    ['# pxeherd-when: VNFSROOT==1', /value "=1" of VNFSROOT/],
    ['# pxeherd-when: VNFSROOT="1"', /value ""1"" of VNFSROOT may only hold .*no quotes/],
    ['# pxeherd-when: VNFSROOT=$X', /value "\$X"/],
    ['# pxeherd-when: VNFS_ROOT=1', /unknown variable VNFS_ROOT: did you mean VNFSROOT\?/],
    ['# pxeherd-when: FOO=1', /unknown variable FOO: a condition tests a variable of the script's environment \(STATE .* VNFSROOT .*, INSTALL, INSTALL_\*, ATTR_\*\)/],
    ['# pxeherd-when: vnfsroot=1', /unknown variable vnfsroot: did you mean VNFSROOT\?/],
    ['# pxeherd-when: ATTR_address=1', /attribute variables are upper case \(ATTR_ADDRESS\)/],
    ['# pxeherd-when: NODETOKEN=', /NODETOKEN differs on every request/],
    ['# pxeherd-when: VNFSROOT=1 ||', /"\|\|" is not NAME=VALUE/],
  ];
  for (const [line, re] of cases) {
    const h = parseHeader(sh('# comment', line));
    assert.equal(h.errors.length, 1, `${line}: ${JSON.stringify(h.errors)}`);
    assert.equal(h.errors[0]!.line, 3, line);
    assert.match(h.errors[0]!.message, re, line);
  }
});

test('a header below the first command is an error, not ignored', () => {
  const h = parseHeader(['#!/bin/sh', '# top', 'set -e', '# pxeherd-when: VNFSROOT=1', ''].join('\n'));
  assert.deepEqual(h.when, []);
  assert.equal(h.errors.length, 1);
  assert.equal(h.errors[0]!.line, 4);
  assert.match(h.errors[0]!.message, /below the first command \(line 3\)/);
});

test('a header line cut at the read limit is not parsed half', () => {
  const pad = '#' + 'x'.repeat(HEAD_BYTES - 40) + '\n';
  const text = `#!/bin/sh\n${pad}# pxeherd-when: VNFSROOT=1 INSTALL=disk\n`;
  const cut = text.slice(0, HEAD_BYTES);
  assert.ok(cut.endsWith('INSTA') || !cut.endsWith('\n'));
  assert.deepEqual(parseHeader(cut, true), { when: [], errors: [] });
  assert.equal(parseHeader(text).when.length, 2);
});

test('variable names: the environment\'s fixed ones, INSTALL_*, ATTR_* (upper case)', () => {
  for (const ok of ['VNFSROOT', 'VNFS', 'GROUPNAME', 'STATE', 'INSTALL', 'INSTALL_ERROR', 'INSTALL_FIRMWARE', 'ATTR_X', 'ATTR_WIPE_ON_BOOT']) assert.equal(nameProblem(ok), undefined, ok);
  for (const bad of ['FOO', 'ATTR_', 'attr_x', 'NODETOKEN', 'HOME']) assert.ok(nameProblem(bad), bad);
});

test('selectByHeaders: skips without running, keeps order, marks a malformed header as a failure', () => {
  const headers: Record<string, string> = {
    '00-a': sh('# none'),
    '10-root': sh('# pxeherd-when: VNFSROOT=1'),
    '20-bad': sh('# pxeherd-when: VNFS_ROOT=1'),
    '30-addr': sh('# pxeherd-when: ATTR_ADDRESS!='),
  };
  const order = Object.keys(headers).map((name) => ({ name, where: 'all' as const, path: `/s/init/all/${name}` }));
  const r = selectByHeaders(order, { VNFSROOT: '', ATTR_ADDRESS: '10.0.0.5' }, (s) => parseHeader(headers[s.name]!));
  assert.deepEqual(r.run.map((s) => [s.name, s.headerError ?? null]), [
    ['00-a', null],
    ['20-bad', r.run[1]!.headerError],
    ['30-addr', null],
  ]);
  assert.equal(r.run[1]!.headerError, 'bad pxeherd header: line 2: pxeherd-when: unknown variable VNFS_ROOT: did you mean VNFSROOT?');
  assert.deepEqual(r.skipped.map((s) => [s.name, s.kind, s.reason]), [['10-root', 'when', "pxeherd-when: VNFSROOT=1, node has VNFSROOT=''"]]);
});

/** The node environment of the 1000-node storm: a kernel+initrd VNFS, no attributes. */
const ctx = { statedir: '/var/lib/pxeherd', vnfsMethod: 'http', vnfsMaster: '', vnfsPrefix: '', path: '/usr/bin:/bin' };
const stormNode = { mac: '52:54:00:00:00:01', name: 'n0001', group: 'cluster', vnfs: 'storm', enabled: true, debug: false, ip: '10.0.0.21' };

test('shipped defaults: headers parse and skip what they should on sample nodes', () => {
  const dir = path.join(DEFAULT_NODESCRIPTS_SRC, 'init', 'all');
  const names = readdirSync(dir).sort();
  const headers = Object.fromEntries(names.map((n) => [n, parseHeader(readFileSync(path.join(dir, n), 'utf8'))]));
  for (const [n, h] of Object.entries(headers)) assert.deepEqual(h.errors, [], n);
  const withHeader = names.filter((n) => headers[n]!.when.length);
  // Without a root filesystem only 00-init, 49-hostname and 99-last are run at all.
  const envNoRoot = scriptEnv(stormNode, 'init', {}, ctx, undefined, '', { root: false });
  assert.deepEqual(names.filter((n) => !whenFails(headers[n]!.when, envNoRoot)), ['00-init', '49-hostname', '99-last']);
  assert.equal(withHeader.length, 15);
  // The sample environments cover each condition both ways. (That the shell guard agrees
  // where the header skips is run for real in test/integration/nodescripts-defaults.test.ts.)
  const samples: [string, Record<string, string>, ReturnType<typeof scriptEnv>][] = [
    ['no root', {}, envNoRoot],
    ['root, address', { address: '10.0.0.9', netmask: '24' }, scriptEnv(stormNode, 'init', { address: '10.0.0.9', netmask: '24' }, ctx, undefined, '', { root: true, rev: 3 })],
    ['disk, error', { install: 'disk', wipe_on_boot: 'no' }, scriptEnv(stormNode, 'init', { install: 'disk', wipe_on_boot: 'no' }, ctx, undefined, '', { root: true, rev: 3, install: { INSTALL: 'disk', INSTALL_ERROR: 'no disk' } })],
    ['disk, plan, wipe', { install: 'disk', wipe_on_boot: 'quick' }, scriptEnv(stormNode, 'init', { install: 'disk', wipe_on_boot: 'quick' }, ctx, undefined, '', { root: true, rev: 3, install: { INSTALL: 'disk', INSTALL_DISK: '/dev/vda' } })],
  ];
  const decisions = samples.map(([label, , env]) => [label, names.filter((n) => whenFails(headers[n]!.when, env))]);
  assert.deepEqual(decisions, [
    ['no root', withHeader],
    ['root, address', ['07-disk-wipe', '08-disk-plan', '20-disk-install', '85-disk-boot']],
    ['disk, error', ['07-disk-wipe', '20-disk-install', '40-address', '85-disk-boot']],
    ['disk, plan, wipe', ['40-address']],
  ]);
});

test('a script that cannot be read is a header error, not a script without conditions', async () => {
  const { readScriptHeader } = await import('../../src/nodescripts/fsread.js');
  const { headerErrorText } = await import('../../src/nodescripts/when.js');
  const h = readScriptHeader('/nonexistent/pxeherd/30-x');
  assert.equal(headerErrorText(h.errors), 'cannot read it to look for pxeherd-when: headers (ENOENT)');
});
