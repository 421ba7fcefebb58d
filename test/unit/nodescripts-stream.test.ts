import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { shQuote, abortLines, continueLine, refusalLines, terminated, oneLine } from '../../src/nodescripts/stream.js';
import { scriptEnv } from '../../src/nodescripts/env.js';
import { Semaphore } from '../../src/nodescripts/semaphore.js';

const sh = (script: string) => spawnSync('sh', ['-c', script], { encoding: 'utf8' });

test('shQuote survives quotes, $, backticks and newlines in sh', () => {
  const nasty = `it's $(rm -rf /) \`id\` "x"\nnext`;
  const r = sh(`printf %s ${shQuote(nasty)}`);
  assert.equal(r.stdout, nasty);
});

test('abort lines print the reason on stderr and make the node shell exit 1', () => {
  const r = sh(`echo before\n${abortLines("init/all/10-x'y", 'exit code 3')}echo after\n`);
  assert.equal(r.status, 1);
  assert.equal(r.stdout, 'before\n');
  assert.equal(r.stderr, "pxeherd: nodescript init/all/10-x'y failed: exit code 3\n");
});

test('continue line is a single comment line even when the reason holds newlines', () => {
  const line = continueLine('init/all/10-x', 'exit code 1\necho pwned');
  assert.equal(line.split('\n').length, 2);
  assert.ok(line.startsWith('# '));
  const r = sh(line + 'echo after');
  assert.equal(r.stdout, 'after\n');
});

test('refusal lines fail the shell with the reason', () => {
  const r = sh(refusalLines('unknown node aa:bb:cc:dd:ee:ff'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /unknown node aa:bb:cc:dd:ee:ff/);
});

test('outputs without a final newline get one; empty stays empty', () => {
  assert.equal(terminated(Buffer.from('echo a')).toString(), 'echo a\n');
  assert.equal(terminated(Buffer.from('echo a\n')).toString(), 'echo a\n');
  assert.equal(terminated(Buffer.alloc(0)).length, 0);
  assert.equal(oneLine('a\r\nb\tc'), 'a b c');
});

test('script environment holds exactly the Perceus variables, PATH, NODETOKEN and ATTR_ keys', () => {
  const env = scriptEnv(
    { mac: 'aa:bb:cc:dd:ee:ff', name: 'n1', group: 'g', vnfs: 'v', enabled: false, debug: true, ip: '10.0.0.9' },
    'init',
    { rack: 'r12', 'bad-key': 'x', STATE: 'shadow', nul: 'a\0b' },
    { statedir: '/var/lib/pxeherd', vnfsMethod: 'http', vnfsMaster: 'm', vnfsPrefix: '/p', path: '/bin' },
  );
  assert.deepEqual(Object.keys(env).sort(), [
    'ATTR_RACK', 'ATTR_STATE', 'DEBUG', 'ENABLED', 'GROUPNAME', 'IPADDR', 'NODEID', 'NODENAME', 'NODETOKEN', 'PATH',
    'STATE', 'STATEDIR', 'VNFS', 'VNFSMASTER', 'VNFSMETHOD', 'VNFSPREFIX', 'VNFSREV', 'VNFSROOT',
  ]);
  assert.equal(env.VNFSREV, '', 'a kernel+initrd VNFS has no revision');
  assert.equal(env.VNFSROOT, '');
  assert.equal(env.ENABLED, '0');
  assert.equal(env.DEBUG, '1');
  assert.equal(env.IPADDR, '10.0.0.9');
  assert.equal(env.STATE, 'init');
  assert.equal(env.ATTR_STATE, 'shadow');
  assert.equal(env.NODETOKEN, '', 'no token when tokens are off');
  assert.equal(scriptEnv({ mac: 'm', name: 'n', group: 'g', vnfs: '', enabled: true, debug: false, ip: '' }, 'ready', {}, { statedir: '/', vnfsMethod: '', vnfsMaster: '', vnfsPrefix: '', path: '' }, '10.1.1.1').IPADDR, '10.1.1.1');
});

test('a pinned node (vnfs NAME@REV) sees the bare name in VNFS and the revision in VNFSREV', () => {
  const ctx = { statedir: '/s', vnfsMethod: 'http', vnfsMaster: '', vnfsPrefix: '', path: '' };
  const env = scriptEnv({ mac: 'm', name: 'n', group: 'g', vnfs: 'deb12@3', enabled: true, debug: false, ip: '' }, 'init', {}, ctx, undefined, undefined, { rev: 3, root: true });
  assert.equal(env.VNFS, 'deb12');
  assert.equal(env.VNFSREV, '3');
  assert.equal(env.VNFSROOT, '1');
});

test('semaphore never exceeds its limit and serves older requests first', async () => {
  const sem = new Semaphore(2);
  const order: string[] = [];
  const r1 = await sem.acquire(5);
  const r2 = await sem.acquire(5);
  assert.equal(sem.active, 2);
  const p = [
    sem.acquire(9).then((rel) => { order.push('new'); return rel; }),
    sem.acquire(1).then((rel) => { order.push('old'); return rel; }),
    sem.acquire(9).then((rel) => { order.push('new2'); return rel; }),
  ];
  assert.equal(sem.waiting, 3);
  r1();
  r1(); // double release is harmless
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, ['old']);
  assert.equal(sem.active, 2);
  r2();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, ['old', 'new']);
  const [relNew, relOld] = await Promise.all([p[0]!, p[1]!]);
  relOld();
  const relNew2 = await p[2]!;
  assert.deepEqual(order, ['old', 'new', 'new2']);
  assert.equal(sem.active, 2);
  relNew();
  relNew2();
  assert.equal(sem.active, 0);
  assert.equal(sem.waiting, 0);
});
