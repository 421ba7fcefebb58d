/**
 * What the HTTP fast path pays per kernel/initrd request for checking a kernel+initrd VNFS's
 * file against its recorded sha256 (issue 19, vnfsfetch19): RevisionArtifacts.servableNow (one
 * indexed read of the vnfs row + a Map look-up, no hashing), against what it saves, the
 * event-naming look-up store.vnfs.get (row + attributes) that recordSent no longer makes when
 * the check has named the file. On a file database in WAL mode like a server's.
 *
 *   node --import tsx bench/vnfs-file-check.ts [--calls 200000]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../src/store/store.js';
import { openDatabase } from '../src/store/db.js';
import { RevisionArtifacts } from '../src/peers/artifacts.js';

const i = process.argv.indexOf('--calls');
const N = i > 0 ? Number(process.argv[i + 1]) : 200_000;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'phvnfscheck-'));
try {
  const store = new Store(openDatabase(path.join(dir, 'pxeherd.db')));
  fs.mkdirSync(path.join(dir, 'vnfs', 'v'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'vnfs', 'v', 'vmlinuz'), Buffer.alloc(1 << 20, 1));
  store.vnfs.put({ name: 'v', kernel: 'vmlinuz', initrd: 'initrd.img', cmdline: '', attrs: { arch: 'x86_64' } });
  const a = new RevisionArtifacts({
    vnfsRoot: path.join(dir, 'vnfs'),
    manifestOf: () => undefined,
    vnfsFileOf: (n, f) => store.vnfs.file(n, f),
    recordVnfsFile: (n, f, h) => store.vnfs.recordFileHash(n, f, h),
    origins: [],
    serverId: 'bench',
    events: { record() {} },
  });
  await a.ensure({ vnfs: 'v', file: 'vmlinuz' });
  const st = fs.statSync(path.join(dir, 'vnfs', 'v', 'vmlinuz'));
  for (let round = 1; round <= 5; round++) {
    let t = process.hrtime.bigint();
    for (let n = 0; n < N; n++) if (a.servableNow({ vnfs: 'v', file: 'vmlinuz' }, st) !== 'kernel') throw new Error('not verified');
    const check = Number(process.hrtime.bigint() - t) / N / 1000;
    t = process.hrtime.bigint();
    for (let n = 0; n < N; n++) store.vnfs.get('v');
    const get = Number(process.hrtime.bigint() - t) / N / 1000;
    console.log(`round ${round}: servableNow ${check.toFixed(2)} µs/call, store.vnfs.get ${get.toFixed(2)} µs/call (${N} calls each)`);
  }
  store.close();
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
