/**
 * `pxeherd serve` with `interface` set caps the TFTP block size at the interface's MTU - 32, so
 * a client that asks for 8192-byte blocks on a 1500-byte link gets 1468 (one frame per block,
 * no IP fragments that PXE ROMs drop), and the file still arrives whole. A client asking for
 * less keeps what it asked for.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { reliabilityFixture, runProbes, stormUnavailable, writeStormConfig } from '../../bench/storm-lab.js';
import { sh } from '../lab/lab.js';

const why = stormUnavailable();
const rel = reliabilityFixture({ why, dirPrefix: 'phrel-mtu-', poolSize: 8 });
before(rel.setUp);
after(rel.tearDown);

test('blksize is capped at the MTU of the served interface; the file arrives whole', { skip: why, timeout: 60_000 }, async () => {
  const { lab, dir } = rel;
  const { config, statedir } = writeStormConfig(lab, { dir, kernelBytes: 4096, initrdBytes: 4096 });
  const mtu = Number(sh('cat', ['/sys/class/net/br0/mtu'], { ns: lab.ns }).trim());
  assert.ok(mtu >= 576 && mtu < 8000, `br0 MTU ${mtu}`);
  const body = Buffer.alloc(100_000);
  for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >> 8)) & 255;
  fs.mkdirSync(path.join(statedir, 'tftproot'), { recursive: true });
  fs.writeFileSync(path.join(statedir, 'tftproot', 'blob.bin'), body);
  const log = path.join(dir, 'pxeherd.log');
  await rel.serve(config, log);
  const S = lab.serverIp;
  const [big, small] = await runProbes(lab, [
    { kind: 'tftp', host: S, file: 'blob.bin', options: { blksize: '8192', tsize: '0' } },
    { kind: 'tftp', host: S, file: 'blob.bin', options: { blksize: '512' } },
  ]);
  assert.equal(big!.status, 0, big!.error);
  assert.equal(big!.oack?.blksize, String(mtu - 32));
  assert.equal(big!.oack?.tsize, String(body.length));
  assert.ok(Buffer.from(big!.body, 'latin1').equals(body), 'the file arrives whole in MTU-sized blocks');
  assert.equal(small!.oack?.blksize, '512');
  assert.ok(Buffer.from(small!.body, 'latin1').equals(body));
});
