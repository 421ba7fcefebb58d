import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BootEvent } from '../../src/nodes/types.js';
import { createHttpApp } from '../../src/http/app.js';
import { vnfsRouter, tftpHttpRouter } from '../../src/http/vnfs.js';
import { checkRelPath } from '../../src/http/files.js';
import { curl, lastOf, listen } from './http-curl.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-http-vnfs-'));
const vnfsRoot = path.join(dir, 'vnfs');
const tftpRoot = path.join(dir, 'tftproot');
fs.mkdirSync(path.join(vnfsRoot, 'centos', 'sub'), { recursive: true });
fs.mkdirSync(path.join(vnfsRoot, 'other'), { recursive: true });
fs.mkdirSync(path.join(tftpRoot, 'efi'), { recursive: true });
const kernel = crypto.randomBytes(300_000);
const initrd = crypto.randomBytes(3 << 20);
fs.writeFileSync(path.join(vnfsRoot, 'centos', 'vmlinuz'), kernel);
fs.writeFileSync(path.join(vnfsRoot, 'centos', 'initrd.img'), initrd);
fs.writeFileSync(path.join(vnfsRoot, 'centos', 'sub', 'rootfs.tgz'), 'rootfs');
fs.writeFileSync(path.join(vnfsRoot, 'centos', '.secret'), 'DOTFILE-CONTENT');
fs.writeFileSync(path.join(vnfsRoot, 'other', 'vmlinuz'), 'other image');
fs.writeFileSync(path.join(dir, 'outside.txt'), 'OUTSIDE-SECRET');
fs.symlinkSync(path.join(dir, 'outside.txt'), path.join(vnfsRoot, 'centos', 'escape'));
fs.symlinkSync('/etc', path.join(vnfsRoot, 'centos', 'etcdir'));
fs.symlinkSync('vmlinuz', path.join(vnfsRoot, 'centos', 'vmlinuz-link'));
fs.writeFileSync(path.join(tftpRoot, 'efi', 'ipxe.efi'), 'EFI-LOADER');
fs.writeFileSync(path.join(tftpRoot, 'undionly.kpxe'), 'BIOS-LOADER');
fs.writeFileSync(path.join(tftpRoot, '.hidden'), 'HIDDEN-CONTENT');
fs.symlinkSync(path.join(dir, 'outside.txt'), path.join(tftpRoot, 'escape'));

const events: BootEvent[] = [];
const sink = { record: (e: BootEvent) => void events.push(e) };
const backend = {
  vnfs: (n: string) => (n === 'centos' ? { kernel: 'vmlinuz', initrd: 'initrd.img' } : undefined),
  nodeName: (mac: string) => (mac === '52:54:00:00:02:01' ? 'n0201' : undefined),
};
const srv = await listen(createHttpApp({ routers: [vnfsRouter({ vnfsRoot, backend, events: sink }), tftpHttpRouter({ root: tftpRoot, events: sink })] }), 18120);
after(async () => {
  await srv.close();
  fs.rmSync(dir, { recursive: true, force: true });
});
const U = (p: string) => srv.base + p;
/** Events are recorded when the response ends, which may be just after curl has read it. */
const settle = () => new Promise((r) => setTimeout(r, 50));

test('GET /vnfs/NAME/FILE streams the file with length, ETag, Last-Modified and Accept-Ranges; events name kernel/initrd and the node from mac=', async () => {
  const r = await curl(U('/vnfs/centos/initrd.img?mac=52-54-00-00-02-01'));
  assert.equal(r.status, 200);
  assert.ok(r.body.equals(initrd));
  assert.equal(r.headers['content-length'], String(initrd.length));
  assert.match(r.headers['etag']!, /^W\/"[0-9a-f]+-[0-9a-f]+"$/);
  assert.ok(r.headers['last-modified']);
  assert.equal(r.headers['accept-ranges'], 'bytes');
  await settle();
  const ev = lastOf(events, (e) => e.kind === 'http.initrd')!;
  assert.equal(ev.mac, '52:54:00:00:02:01');
  assert.equal(ev.node, 'n0201');
  assert.equal(ev.detail?.status, 200);
  assert.ok((ev.detail?.bytes as number) >= initrd.length, `bytes ${ev.detail?.bytes}`);
  assert.equal(typeof ev.detail?.ms, 'number');
  const k = await curl(U('/vnfs/centos/vmlinuz'));
  assert.ok(k.body.equals(kernel));
  await settle();
  const kev = lastOf(events, (e) => e.kind === 'http.kernel')!;
  assert.equal(kev.mac, undefined, 'no mac= in the URL: no node');
  assert.equal(kev.detail?.status, 200);
});

test('HEAD answers the headers without a body', async () => {
  const r = await curl(U('/vnfs/centos/vmlinuz'), ['-I']);
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-length'], String(kernel.length));
  // With -I curl prints the headers on stdout: nothing may follow them.
  assert.ok(r.body.toString('latin1').endsWith('\r\n\r\n'), 'no body after the headers');
  assert.equal(r.body.toString('latin1').split('\r\n\r\n').length, 2);
});

test('Range requests get 206 with the exact bytes, suffix ranges work, unsatisfiable ranges get 416', async () => {
  const r = await curl(U('/vnfs/centos/initrd.img'), ['-r', '100-1123']);
  assert.equal(r.status, 206);
  assert.equal(r.headers['content-range'], `bytes 100-1123/${initrd.length}`);
  assert.ok(r.body.equals(initrd.subarray(100, 1124)));
  const tail = await curl(U('/vnfs/centos/initrd.img'), ['-H', 'Range: bytes=-10']);
  assert.equal(tail.status, 206);
  assert.ok(tail.body.equals(initrd.subarray(initrd.length - 10)));
  const bad = await curl(U('/vnfs/centos/initrd.img'), ['-H', `Range: bytes=${initrd.length + 5}-`]);
  assert.equal(bad.status, 416);
  assert.equal(bad.headers['content-range'], `bytes */${initrd.length}`);
});

test('If-None-Match with the ETag gets 304; If-Range with a stale ETag gets the whole file', async () => {
  const first = await curl(U('/vnfs/centos/vmlinuz'), ['-I']);
  const etag = first.headers['etag']!;
  const again = await curl(U('/vnfs/centos/vmlinuz'), ['-H', `If-None-Match: ${etag}`]);
  assert.equal(again.status, 304);
  assert.equal(again.body.length, 0);
  const other = await curl(U('/vnfs/centos/vmlinuz'), ['-H', 'If-None-Match: W/"0-0"']);
  assert.equal(other.status, 200);
  const ims = await curl(U('/vnfs/centos/vmlinuz'), ['-H', `If-Modified-Since: ${first.headers['last-modified']}`]);
  assert.equal(ims.status, 304);
  const stale = await curl(U('/vnfs/centos/vmlinuz'), ['-r', '0-9', '-H', 'If-Range: W/"dead-beef"']);
  assert.equal(stale.status, 200);
  assert.equal(stale.body.length, kernel.length);
  const fresh = await curl(U('/vnfs/centos/vmlinuz'), ['-r', '0-9', '-H', `If-Range: ${etag}`]);
  assert.equal(fresh.status, 206);
});

test('files in subdirectories and symlinks that stay inside the VNFS directory are served', async () => {
  assert.equal((await curl(U('/vnfs/centos/sub/rootfs.tgz'))).body.toString(), 'rootfs');
  assert.ok((await curl(U('/vnfs/centos/vmlinuz-link'))).body.equals(kernel));
});

const traversals = [
  '/vnfs/centos/../other/vmlinuz',
  '/vnfs/centos/../../outside.txt',
  '/vnfs/centos/%2e%2e/%2e%2e/outside.txt',
  '/vnfs/centos/%2E%2E%2F%2E%2E%2Foutside.txt',
  '/vnfs/centos/..%2f..%2foutside.txt',
  '/vnfs/centos/%252e%252e/%252e%252e/outside.txt',
  '/vnfs/..%2fouside.txt/x',
  '/vnfs/%2e%2e/outside.txt',
  '/vnfs/centos/.secret',
  '/vnfs/centos/%2esecret',
  '/vnfs/centos/escape',
  '/vnfs/centos/etcdir/passwd',
  '/vnfs/centos/sub/..%5c..%5c..%5coutside.txt',
  '/vnfs/centos/vmlinuz%00.txt',
  '/vnfs/centos//etc/passwd',
  '/vnfs/centos/%2fetc%2fpasswd',
  '/vnfs/centos/./vmlinuz',
  '/tftp/../outside.txt',
  '/tftp/%2e%2e/outside.txt',
  '/tftp/efi/%2e%2e/%2e%2e/outside.txt',
  '/tftp/.hidden',
  '/tftp/escape',
  '/tftp/%2fetc%2fpasswd',
  '/tftp/efi/..%2f..%2foutside.txt',
];

test(`${traversals.length} traversal attempts on /vnfs and /tftp (.., %2e%2e, %2f, %5c, NUL, dotfiles, symlinks out) are refused and leak nothing`, async () => {
  for (const p of traversals) {
    const r = await curl(U(p));
    assert.ok([400, 403, 404].includes(r.status), `${p}: status ${r.status}`);
    const body = r.body.toString();
    assert.ok(!body.includes('OUTSIDE-SECRET') && !body.includes('root:') && !body.includes('DOTFILE-CONTENT') && !body.includes('HIDDEN-CONTENT') && !body.includes('other image'), `${p} leaked: ${body}`);
    assert.doesNotMatch(body, /at .*\.js|<html/i, `${p}: plain one-line refusal, no stack trace`);
  }
  await settle();
  assert.ok(events.filter((e) => e.kind === 'http.error').length >= traversals.length - 4, 'refusals are recorded as http.error');
});

test('GET /tftp/<file> serves the TFTP root over HTTP (for UEFI HTTP boot), with Range', async () => {
  const r = await curl(U('/tftp/efi/ipxe.efi'));
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'EFI-LOADER');
  const p = await curl(U('/tftp/undionly.kpxe'), ['-r', '0-3']);
  assert.equal(p.status, 206);
  assert.equal(p.body.toString(), 'BIOS');
  assert.equal((await curl(U('/tftp/missing.efi'))).status, 404);
  assert.equal((await curl(U('/vnfs/centos/missing'))).status, 404);
  assert.equal((await curl(U('/vnfs/nosuch/vmlinuz'))).status, 404);
});

test('checkRelPath refuses each unsafe segment kind (pure)', () => {
  for (const segs of [[], [''], ['.'], ['..'], ['.x'], ['a\\b'], ['a\u0000'], ['a b'], ['a%2f'], Array(17).fill('a')]) {
    assert.equal(checkRelPath(segs).ok, false, JSON.stringify(segs));
  }
  assert.deepEqual(checkRelPath(['efi', 'ipxe.efi']), { ok: true, segments: ['efi', 'ipxe.efi'] });
});

test('GET /tftp/ serves the generated GRUB/pxelinux configs (GRUB by UEFI HTTP boot reads them there), with GRUB\'s colon MAC; declined names fall back to the files', async () => {
  const asked: { kind: string; mac?: string; path: string }[] = [];
  const gen = await listen(
    createHttpApp({
      routers: [
        tftpHttpRouter({
          root: tftpRoot,
          events: sink,
          generate: (req) => {
            asked.push(req);
            return req.mac === '52:54:00:f0:00:07' ? Buffer.from(`# config for ${req.mac}\n`) : undefined;
          },
        }),
      ],
    }),
    0,
  );
  try {
    const r = await curl(`${gen.base}/tftp/grub/grub.cfg-52:54:00:f0:00:07`);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), '# config for 52:54:00:f0:00:07\n');
    assert.deepEqual(asked.at(-1), { kind: 'grub', mac: '52:54:00:f0:00:07', path: 'grub/grub.cfg-52:54:00:f0:00:07' });
    await settle();
    assert.equal(lastOf(events, (e) => e.kind === 'http.file')!.detail!.generated, true);
    assert.equal((await curl(`${gen.base}/tftp/pxelinux.cfg/01-52-54-00-00-00-09`)).status, 404, 'declined and no such file');
    assert.equal((await curl(`${gen.base}/tftp/undionly.kpxe`)).body.toString(), 'BIOS-LOADER', 'other names are files as before');
  } finally {
    await gen.close();
  }
});
