/**
 * Reliability (1): fuzzed DHCP and TFTP datagrams — random bytes, mutated real captures and
 * hostile well-formed packets (bench/storm-fuzz.ts) — at the whole `pxeherd serve` running in a
 * namespace. The process must survive, and real clients must still be served afterwards:
 * busybox udhcpc gets its reserved lease and curl fetches undionly.kpxe byte for byte.
 *
 * CI size 100 000 datagrams (PXEHERD_REL_FUZZ_COUNT to change); the full million is
 * `PXEHERD_REL_FUZZ_COUNT=1000000 node --import tsx --test test/integration/reliability-fuzz.test.ts`
 * (RELIABILITY.md).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { run } from '../lab/lab.js';
import { netCounters, pxeherdCli, registerSyntheticVnfs, reliabilityFixture, ROOT, stormUnavailable, writeStormConfig } from '../../bench/storm-lab.js';

const why = stormUnavailable(['busybox', 'curl']);
const COUNT = Number(process.env.PXEHERD_REL_FUZZ_COUNT ?? 100_000);
const REAL_MAC = '02:85:00:00:00:01';

const rel = reliabilityFixture({ why, dirPrefix: 'phrel-fuzz-', poolSize: 64 });
before(rel.setUp);
after(rel.tearDown);

test(`pxeherd serve survives ${COUNT} fuzzed DHCP and TFTP datagrams and still serves udhcpc and curl tftp`, { skip: why, timeout: Math.max(480_000, COUNT * 4 + 80_000) }, async () => {
  const { lab, dir } = rel;
  // Every random MAC in a DISCOVER is auto-registered (tens of thousands of nodes for a
  // million datagrams). Past 10^width names the store rescans all names on each registration
  // (RELIABILITY.md, findings), so the pattern has room for a million.
  const { config, statedir } = writeStormConfig(lab, { dir, kernelBytes: 4096, initrdBytes: 4096, namePattern: 'n######' });
  registerSyntheticVnfs(dir, config, 4096, 4096);
  // A reservation, so whatever the fuzz leased cannot starve the real client afterwards.
  assert.equal(pxeherdCli(['node', 'add', REAL_MAC, 'survivor', '--ip', '10.85.0.50'], config).code, 0);
  // The fuzzer's pacing requests come from this MAC (bench/storm-fuzz.ts): reserved too.
  assert.equal(pxeherdCli(['node', 'add', '02:f3:00:00:00:01', 'fuzzsync', '--ip', '10.85.0.51'], config).code, 0);
  const server = await rel.serve(config, path.join(dir, 'pxeherd.log'));

  const drops0 = netCounters(lab.ns).RcvbufErrors!;
  const t0 = Date.now();
  const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'storm-fuzz.ts'), JSON.stringify({ server: lab.serverIp, count: COUNT, seed: 20261122 })], {
    ns: lab.clientNs,
    cwd: ROOT,
    timeoutMs: Math.max(400_000, COUNT * 4),
  });
  const secs = (Date.now() - t0) / 1000;
  assert.match(stdout, new RegExp(`^SENT ${COUNT} REPLIES \\d+`), 'the fuzzer sent everything');
  const replies = Number(/REPLIES (\d+)/.exec(stdout)![1]);
  const syncs = Number(/SYNCS (\d+)/.exec(stdout)![1]);
  const syncTimeouts = Number(/SYNC_TIMEOUTS (\d+)/.exec(stdout)![1]);
  const drops = netCounters(lab.ns).RcvbufErrors! - drops0;
  // The pacing requests were answered: the server read the fuzz rather than the kernel dropping it.
  assert.ok(syncTimeouts <= syncs * 0.05, `pacing requests answered (${syncTimeouts} of ${syncs} timed out)`);
  assert.equal(server.proc.exitCode, null, `pxeherd is still running after the fuzz:\n${fs.readFileSync(server.log, 'utf8').slice(-2000)}`);
  assert.ok(replies > 0, 'the server kept answering the well-formed part of the fuzz');

  // A real DHCP client (with the reserved MAC) still gets its reserved address.
  await run('ip', ['link', 'set', 'eth0', 'address', REAL_MAC], { ns: lab.clientNs });
  const script = path.join(dir, 'udhcpc.sh');
  fs.writeFileSync(script, '#!/bin/sh\necho "udhcpc-event $1 ip=$ip"\n', { mode: 0o755 });
  const d = await run('busybox', ['udhcpc', '-f', '-q', '-n', '-t', '10', '-T', '2', '-i', 'eth0', '-s', script, '-V', 'PXEClient:Arch:00000:UNDI:002001'], { ns: lab.clientNs, timeoutMs: 60_000 }).catch((e) => ({ stdout: String((e as { stdout?: string }).stdout ?? ''), stderr: String(e) }));
  assert.match(d.stdout, /udhcpc-event bound ip=10\.85\.0\.50/, `udhcpc got its lease after the fuzz: ${d.stdout}`);

  // And a real TFTP client gets the loader, byte for byte.
  const out = path.join(dir, 'got.kpxe');
  await run('curl', ['-sS', '--max-time', '30', '-o', out, `tftp://${lab.serverIp}/undionly.kpxe`], { ns: lab.clientNs, timeoutMs: 40_000 });
  assert.deepEqual(fs.readFileSync(out), fs.readFileSync(path.join(statedir, 'tftproot', 'undionly.kpxe')), 'curl tftp got undionly.kpxe intact');
  assert.equal(server.proc.exitCode, null, 'still running at the end');
  const logText = fs.readFileSync(server.log, 'utf8');
  assert.doesNotMatch(logText, /uncaught|unhandled|FATAL|RangeError|TypeError/i, 'no uncaught errors logged');
  process.stderr.write(`# reliability fuzz: ${COUNT} datagrams in ${secs.toFixed(1)} s, ${replies} replies, ${syncs} pacing round trips (${syncTimeouts} unanswered), ${drops} dropped by the kernel (UDP RcvbufErrors in the server namespace)\n`);
});
