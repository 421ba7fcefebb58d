/**
 * The neighbour-table check `serve` makes at start (src/server/neighbour-table.ts): a cluster
 * larger than the kernel's ARP table loses machines in a boot storm, so the admin is told, with
 * the sysctl that lifts it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { neighbourTableAdvice, rangeAddresses, readNeighbourLimits } from '../../src/server/neighbour-table.js';

const LINUX_DEFAULTS = { thresh1: 128, thresh2: 512, thresh3: 1024 };

test('the DHCP ranges count their addresses; a missing, inverted or malformed range counts nothing', () => {
  assert.equal(rangeAddresses([['10.0.0.100', '10.0.0.199']]), 100);
  assert.equal(rangeAddresses([['10.79.1.0', '10.79.255.254'], undefined, ['10.2.0.10', '10.2.0.20']]), 65279 + 11);
  assert.equal(rangeAddresses([['10.0.0.9', '10.0.0.1'], ['nonsense', '10.0.0.1']]), 0);
});

test('within the soft limit nothing is said; beyond it the warning names the numbers and the sysctl to run', () => {
  assert.equal(neighbourTableAdvice(500, LINUX_DEFAULTS), undefined);
  assert.equal(neighbourTableAdvice(512, LINUX_DEFAULTS), undefined);
  const w = neighbourTableAdvice(1000, LINUX_DEFAULTS)!;
  assert.match(w, /^this server may talk to 1000 machines, but the kernel's neighbour \(ARP\) table starts evicting above 512 entries and refuses new ones at 1024 /);
  assert.match(w, /neighbour table overflow/);
  assert.match(w, /sysctl -w net\.ipv4\.neigh\.default\.gc_thresh1=512 net\.ipv4\.neigh\.default\.gc_thresh2=1024 net\.ipv4\.neigh\.default\.gc_thresh3=2048 /);
  // A raised table that fits says nothing; the suggestion always fits twice the machines.
  assert.equal(neighbourTableAdvice(1000, { thresh1: 512, thresh2: 1024, thresh3: 2048 }), undefined);
  assert.match(neighbourTableAdvice(65289, LINUX_DEFAULTS)!, /gc_thresh3=131072 /);
});

test("limits are read from /proc, and nothing comes of a host where they can't be", () => {
  const files: Record<string, string> = { gc_thresh1: '128\n', gc_thresh2: '512\n', gc_thresh3: '1024\n' };
  assert.deepEqual(readNeighbourLimits((f) => files[f.split('/').pop()!]!), LINUX_DEFAULTS);
  assert.equal(
    readNeighbourLimits(() => {
      throw new Error('ENOENT');
    }),
    undefined,
  );
  assert.equal(readNeighbourLimits(() => 'garbage'), undefined);
  const here = readNeighbourLimits();
  if (here) assert.ok(here.thresh3 >= here.thresh2 && here.thresh2 >= here.thresh1, JSON.stringify(here));
});
