import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planRollback, planRollbacks, rollbackNodes, RollbackRefused, type RollbackBackend, type RollbackLookups } from '../../src/install/rollback.js';
import { installReportHandler } from '../../src/install/state.js';
import { Store } from '../../src/store/store.js';
import { openDatabase } from '../../src/store/db.js';
import type { BootEvent, Node } from '../../src/nodes/types.js';
import type { NodeInstall } from '../../src/store/installs.js';

const node = (name: string, o: Partial<Node> = {}): Node => ({ name, mac: `52:54:00:00:00:${name.slice(-2)}`, group: '', vnfs: 'deb', ip: '', enabled: true, debug: false, boot: 'local', state: 'ready', lastContact: null, attrs: {}, ...o }) as Node;

function install(rev: number, prev: number | null, vnfs = 'deb'): NodeInstall {
  return { mac: '', vnfs, rev, disk: 'vda', firmware: 'bios', installedAt: 1, previous: prev === null ? null : { vnfs, rev: prev, installedAt: 0 }, localBootAt: null, localBootFailures: 0 };
}

function lookups(installs: Record<string, NodeInstall>, o: { install?: string; problem?: string } = {}): RollbackLookups {
  return {
    install: (mac) => installs[mac],
    attrsFor: (): Record<string, string> => (o.install === undefined ? { install: 'disk' } : o.install ? { install: o.install } : {}),
    revisionProblem: () => o.problem,
  };
}

test('planRollback: the install before the one on the disk, pinned as NAME@REV in the vnfs field', () => {
  const n = node('n01', { vnfs: 'deb13' });
  const p = planRollback(n, lookups({ [n.mac]: install(4, 2, 'deb12') }));
  assert.deepEqual([p.from, p.to, p.vnfsBefore, p.vnfsAfter], [{ vnfs: 'deb12', rev: 4 }, { vnfs: 'deb12', rev: 2 }, 'deb13', 'deb12@2']);
});

test('planRollback refuses, naming the node and what to do: disabled, not installed to disk, no earlier install, the same revision, a revision that is gone', () => {
  const n = node('n01');
  const refused = (l: RollbackLookups, x: Node = n) => {
    try {
      planRollback(x, l);
    } catch (e) {
      assert.ok(e instanceof RollbackRefused);
      return e.message;
    }
    assert.fail('not refused');
  };
  assert.equal(refused(lookups({}), node('n01', { enabled: false })), 'n01 is disabled: pxeherd node enable n01 first');
  assert.match(refused(lookups({}, { install: '' })), /^n01 is not installed to disk \(install=stateless\)/);
  assert.match(refused(lookups({})), /^n01 has no install on its disk that pxeherd recorded .*pxeherd node reinstall n01$/);
  assert.match(refused(lookups({ [n.mac]: install(2, 1) }, { install: 'stateless' })), /^n01 has install=stateless now: reinstalled, it would boot stateless instead of rewriting its disk \(which holds deb r2\); set it back first: pxeherd node set attr\.install=disk n01$/);
  assert.match(refused(lookups({ [n.mac]: install(2, null) })), /^n01: its disk holds deb r2, the first install pxeherd recorded for it: there is no earlier revision to roll back to$/);
  assert.match(refused(lookups({ [n.mac]: install(2, 2) })), /the install before deb r2 was the same revision/);
  assert.match(refused(lookups({ [n.mac]: install(2, 1) }, { problem: 'revision 1 of VNFS "deb" was pruned' })), /^n01: the install before deb r2 was deb r1, and revision 1 of VNFS "deb" was pruned: it cannot be installed again\. Nothing was changed\. Pick a revision that exists \(pxeherd vnfs revisions deb\), then: pxeherd node set vnfs deb@REV n01 && pxeherd node reinstall n01$/);
  // Several nodes: all refusals in one message, none planned.
  const m = node('n02');
  assert.throws(() => planRollbacks([n, m], lookups({ [n.mac]: install(2, 1) })), (e: Error) => e instanceof RollbackRefused && /^n02 has no install/.test(e.message));
  assert.throws(() => planRollbacks([node('n03'), m], lookups({})), (e: Error) => /^2 of 2 node\(s\) cannot be rolled back \(nothing was changed\):\n {2}n03 has no install.*\n {2}n02 has no install/.test(e.message));
});

test('install.done: a rollback swaps current and previous, a second one swaps them back; reinstalling the same revision keeps the previous one', () => {
  const s = new Store(openDatabase(':memory:'));
  const n = s.nodes.add({ mac: '52:54:00:00:00:09', name: 'n09', vnfs: 'deb' }, { pattern: 'n##', firstNumber: 0, defaultGroup: '', defaultVnfs: '' });
  const done = (rev: number) => installReportHandler(s, s.events)(s.nodes.byName('n09')!, 'install.done', { rev, vnfs: 'deb', disk: 'vda', firmware: 'bios' });
  const now = () => {
    const i = s.installs.get(n.mac)!;
    return [i.rev, i.previous?.rev ?? null];
  };
  done(1);
  done(2);
  assert.deepEqual(now(), [2, 1]);
  done(2);
  assert.deepEqual(now(), [2, 1], 'the same revision again: the rollback target stays');
  done(1);
  assert.deepEqual(now(), [1, 2], 'rolled back');
  done(2);
  assert.deepEqual(now(), [2, 1], 'rolled back twice: where it started');
});

test('rollbackNodes with wait: a node that reaches ready without the rolled-back revision on its disk is failed, with an event', async () => {
  const n = node('n01');
  const events: BootEvent[] = [];
  let t = 1000;
  let onDisk = install(2, 1);
  const b: RollbackBackend = {
    pin: () => {},
    install: () => onDisk,
    setBootOnce: () => {},
    setBootPxe: async () => ({ ok: true, node: n.name, action: 'pxe', driver: 'command', output: '' }) as never,
    powerCycle: async () => ({ ok: true, node: n.name, action: 'cycle', driver: 'command', output: '' }) as never,
    eventsSince: () => [{ mac: n.mac, node: n.name, kind: 'provision.start', detail: { state: 'ready' } }],
    probeSsh: async () => {},
    record: (e) => void events.push(e),
    now: () => (t += 10),
    sleep: async () => {},
  };
  const plans = [planRollback(n, lookups({ [n.mac]: onDisk }))];
  const [bad] = await rollbackNodes(plans, b, { wait: true, timeoutMs: 60_000, parallel: 1, pollMs: 1 });
  assert.deepEqual([bad!.result, bad!.stage, bad!.message], ['failed', 'ready', 'reached ready without reporting install.done: its disk was not rewritten (still deb r2)']);
  assert.deepEqual(events.filter((e) => e.kind.startsWith('install.')).map((e) => e.kind), ['install.rollback', 'install.rollback.fail']);
  onDisk = { ...install(1, 2), installedAt: 5000 };
  const [ok] = await rollbackNodes(plans, b, { wait: true, timeoutMs: 60_000, parallel: 1, pollMs: 1 });
  assert.equal(ok!.result, 'ready');
  assert.match(ok!.message, /its disk holds deb r1 \(before it: deb r2\)$/);
});
