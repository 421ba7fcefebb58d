/**
 * The boot storm in CI size: `bench/storm.ts --nodes 100 --json` (the command users run as
 * `npm run storm`) walks 100 simulated machines through DHCP, TFTP, iPXE script, kernel,
 * initrd, provision init and ready against `pxeherd serve` in a namespace, then runs the
 * DHCP/TFTP/HTTP stages alone against pxeherd, dnsmasq and nginx. All must reach ready and the
 * last line must be the documented JSON summary.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT, stormUnavailable } from '../../bench/storm-lab.js';

const run = promisify(execFile);
const why = stormUnavailable(['dnsmasq', 'nginx']);
const NODES = Number(process.env.PXEHERD_REL_STORM_NODES ?? 100);

test(`npm run storm -- --nodes ${NODES} --json: every simulated machine reaches ready and the summary compares against dnsmasq and nginx`, { skip: why, timeout: 300_000 }, async () => {
  const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'storm.ts'), '--nodes', String(NODES), '--kernel-mib', '0.25', '--initrd-mib', '1', '--json'], {
    cwd: ROOT,
    timeout: 280_000,
    maxBuffer: 16 << 20,
  }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
    throw new Error(`storm failed: ${e.message}\n${e.stderr?.slice(-3000)}\n${e.stdout?.slice(-2000)}`);
  });
  const last = stdout.trim().split('\n').pop()!;
  const s = JSON.parse(last) as {
    nodes: number;
    ready: number;
    failures: number;
    seconds: number;
    stages: Record<string, { p50: number; p99: number }>;
    server: { cpuSeconds: number; peakRssMiB: number };
    compare: Record<string, { ref: string; ratioP50: number; referenceFailures: number; pxeherdFailures: number }>;
  };
  assert.equal(s.nodes, NODES);
  assert.equal(s.ready, NODES, `all nodes ready (${stderr.slice(-1500)})`);
  assert.equal(s.failures, 0);
  assert.ok(s.seconds > 0);
  assert.deepEqual(Object.keys(s.stages).sort(), ['dhcp', 'dhcp-ipxe', 'init', 'initrd', 'ipxe', 'kernel', 'ready', 'tftp'].sort(), 'every stage of the boot path was timed');
  for (const [k, v] of Object.entries(s.stages)) assert.ok(v.p50 > 0 && v.p99 >= v.p50, `stage ${k} has p50 <= p99`);
  assert.ok(s.server.cpuSeconds > 0 && s.server.peakRssMiB > 20, 'the server process was sampled from /proc');
  assert.deepEqual(Object.keys(s.compare).sort(), ['dhcp', 'initrd', 'kernel', 'tftp']);
  for (const [k, c] of Object.entries(s.compare)) {
    assert.equal(c.pxeherdFailures, 0, `${k} alone against pxeherd: no failures`);
    assert.equal(c.referenceFailures, 0, `${k} alone against ${c.ref}: no failures`);
    assert.ok(Number.isFinite(c.ratioP50), `${k}: a ratio against ${c.ref}`);
  }
  process.stderr.write(`# storm ${NODES}: ${last}\n`);
});
