// bench/lifecycle.ts without a VM: its command line and the arithmetic that turns events and
// nginx's log into stages. No timing is checked here (timings never go into pass/fail tests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs, UsageError, stagesFrom, parseNginxLog, referenceStages, pxeherdStages, median, referenceInit } from '../../bench/lifecycle.js';

test('lifecycle bench: arguments, defaults and clear refusals', () => {
  assert.deepEqual(parseArgs([]), { rounds: 1, json: false, memMb: 1536, help: false });
  assert.deepEqual(parseArgs(['--rounds', '3', '--json', '--mem', '2048']), { rounds: 3, json: true, memMb: 2048, help: false });
  assert.equal(parseArgs(['--help']).help, true);
  assert.throws(() => parseArgs(['--rounds', '0']), (e: Error) => e instanceof UsageError && /--rounds needs a whole number >= 1, got "0"/.test(e.message));
  assert.throws(() => parseArgs(['--rounds']), /got nothing/);
  assert.throws(() => parseArgs(['--mem', '64']), /--mem needs a whole number >= 512/);
  assert.throws(() => parseArgs(['--fast']), /unknown argument "--fast"/);
});

test('lifecycle bench: stages are differences between instants; a missing instant is null and the next stage spans it', () => {
  assert.deepEqual(stagesFrom(1000, [['a', 3000], ['b', undefined], ['c', 7500]]), [
    { stage: 'a', seconds: 2 },
    { stage: 'b', seconds: null },
    { stage: 'c', seconds: 4.5 },
  ]);
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
});

test("lifecycle bench: the reference's stages from nginx's log (request start = log time - request time)", () => {
  const log = [
    '1000.500 0.000 GET /boot.ipxe 200 300',
    '1001.000 0.010 GET /nodes/52-54-00-1c-18-01.ipxe 404 150',
    '1005.000 2.000 GET /stage1.img 200 9000000',
    '1010.000 0.001 GET /mark/r0/start 404 150',
    '1015.000 0.001 GET /mark/r0/formatted 404 150',
    'garbage line',
    '1050.000 34.000 GET /image.tar.zst 200 190000000',
    '1050.100 0.001 GET /mark/r0/written 404 150',
    '1070.000 0.002 PUT /nodes/52-54-00-1c-18-01.ipxe 201 0',
    '1080.000 0.000 GET /boot.ipxe 200 300',
    '1080.200 0.001 GET /nodes/52-54-00-1c-18-01.ipxe 200 40',
  ].join('\n');
  const reqs = parseNginxLog(log);
  assert.equal(reqs.length, 10);
  assert.deepEqual(reqs[2], { start: 1003000, end: 1005000, method: 'GET', uri: '/stage1.img', status: 200, bytes: 9000000 });
  const st = referenceStages(990_000, reqs, 'r0', 1120_000);
  assert.deepEqual(
    st.map((s) => s.seconds),
    [10.5, 9.5, 5, 35.1, 19.9, 10.2, 39.8, 34],
  );
  assert.equal(st.at(-1)!.stage, '(of which the image download)');
  // Another round's marks are not this round's.
  assert.equal(referenceStages(990_000, reqs, 'r1', 1120_000)[1]!.seconds, null);
});

test("lifecycle bench: pxeherd's stages from its events", () => {
  const ev = (time: number, kind: string, detail: Record<string, unknown> = {}) => ({ time, kind, detail });
  const evs = [
    ev(500, 'reinstall.start'),
    ev(1000, 'power.pxe'),
    ev(2000, 'power.cycle'),
    ev(10_000, 'dhcp.discover'),
    ev(12_000, 'http.ipxe'),
    ev(13_000, 'http.kernel'),
    ev(15_000, 'http.initrd'),
    ev(30_000, 'inventory.report'),
    ev(31_000, 'provision.start', { state: 'init' }),
    ev(60_000, 'image.download', { ok: 1, ms: 25_000 }),
    ev(65_000, 'image.verify', { ok: 1 }),
    ev(70_000, 'install.start'),
    ev(110_000, 'install.write', { ms: 30_000 }),
    ev(140_000, 'install.done'),
    ev(160_000, 'http.ipxe'),
    ev(200_000, 'node.checkin', { first: true }),
  ];
  const st = pxeherdStages(0, evs, 205_000);
  assert.deepEqual(
    st.map((s) => s.seconds),
    [12, 18, 5, 25, 5, 5, 10, 30, 30, 20, 40, 5],
  );
  assert.equal(st.reduce((a, s) => a + (s.seconds ?? 0), 0), 205);
});

test("lifecycle bench: the reference stage one quotes the plan's sfdisk script for sh", () => {
  const init = referenceInit({ sfdisk: "label: gpt\nsize=1MiB, type=21686148-6449-6E4F-744E-656564454649, name='x'\n", mkfsRoot: 'mke2fs -t ext4 -F -L root', rootPart: '/dev/vda2', disk: '/dev/vda', grubCmdline: 'console=ttyS0,115200' });
  assert.match(init, /printf '%s' 'label: gpt\nsize=1MiB, type=21686148-6449-6E4F-744E-656564454649, name='\\''x'\\''\n' \| \/usr\/sbin\/sfdisk/);
  assert.match(init, /mke2fs -t ext4 -F -L root \/dev\/vda2/);
  assert.match(init, /grub-install --target=i386-pc --recheck --no-floppy \/dev\/vda/);
});
