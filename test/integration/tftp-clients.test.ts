/**
 * Real TFTP clients from Debian (tftp-hpa, atftp, curl, busybox) against pxeherd's server
 * on 127.0.0.1 (ephemeral port, so no namespace is needed). Every download is checked by
 * sha256; negotiated options are checked from the clients' own reports where they give
 * one and from pxeherd's tftp.start events.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { BootEvent } from '../../src/nodes/types.js';
import { TftpServer } from '../../src/tftp/server.js';

const bins = { tftp: '/usr/bin/tftp', atftp: '/usr/bin/atftp', curl: '/usr/bin/curl', busybox: '/usr/bin/busybox' };
const missing = Object.entries(bins)
  .filter(([, p]) => !existsSync(p))
  .map(([n]) => n);
const skip = missing.length ? `Debian TFTP clients missing: ${missing.join(', ')} (apt-get install tftp-hpa atftp curl busybox-static)` : false;

let dir: string;
let root: string;
let server: TftpServer;
let port = 0;
const events: BootEvent[] = [];
const content: Record<string, Buffer> = {};
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, out });
    });
  });
}

function downloaded(out: string): string {
  return existsSync(out) ? sha(readFileSync(out)) : '(no file)';
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'phtftp-clients-'));
  root = path.join(dir, 'root');
  await import('node:fs/promises').then((f) => f.mkdir(path.join(root, 'sub'), { recursive: true }));
  content['boot.bin'] = randomBytes(5 * 1024 * 1024 + 333);
  content['sub/small.cfg'] = Buffer.from('kernel vmlinuz\nappend initrd=initrd.img\n');
  for (const [n, b] of Object.entries(content)) writeFileSync(path.join(root, n), b);
  server = new TftpServer({
    root,
    port: 0,
    address: '127.0.0.1',
    events: { record: (e) => events.push(e) },
    generate: async (req) => (req.mac ? Buffer.from(`# generated for ${req.mac}\n`) : undefined),
  });
  port = (await server.start()).port;
});

after(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function lastStart(file: string): Record<string, unknown> | undefined {
  return [...events].reverse().find((e) => e.kind === 'tftp.start' && e.detail?.file === file)?.detail;
}

test('tftp-hpa downloads a file in octet mode (lock-step, no options)', { skip }, async () => {
  const out = path.join(dir, 'hpa.bin');
  const r = await run(bins.tftp, ['-m', 'binary', '127.0.0.1', String(port), '-c', 'get', 'boot.bin', out]);
  assert.equal(r.code, 0, r.out);
  assert.equal(downloaded(out), sha(content['boot.bin']!), 'tftp-hpa exits 0 even on error: the file decides');
  assert.equal(lastStart('boot.bin')?.blksize, 512);
});

test('tftp-hpa in ascii mode gets the original text back (netascii round trip)', { skip }, async () => {
  const out = path.join(dir, 'hpa.cfg');
  const r = await run(bins.tftp, ['-m', 'ascii', '127.0.0.1', String(port), '-c', 'get', '/sub/small.cfg', out]);
  assert.equal(r.code, 0, r.out);
  assert.equal(readFileSync(out, 'utf8'), content['sub/small.cfg']!.toString());
  assert.equal(lastStart('/sub/small.cfg')?.mode, 'netascii');
});

test('atftp with blksize 1468, tsize and windowsize 16 gets the file and those options', { skip }, async () => {
  const out = path.join(dir, 'atftp.bin');
  const r = await run(bins.atftp, ['--trace', '--option', 'blksize 1468', '--option', 'tsize 0', '--option', 'windowsize 16', '-g', '-r', 'boot.bin', '-l', out, '127.0.0.1', String(port)]);
  assert.equal(r.code, 0, r.out);
  assert.equal(downloaded(out), sha(content['boot.bin']!));
  // atftp --trace prints the OACK it received, e.g. "received OACK <tsize: 6, windowsize: 16, blksize: 1468, >".
  const oack = /received OACK <([^>]*)>/.exec(r.out)?.[1] ?? '';
  assert.match(oack, /blksize: 1468/);
  assert.match(oack, /windowsize: 16/);
  assert.match(oack, new RegExp(`tsize: ${content['boot.bin']!.length}\\b`));
  const d = lastStart('boot.bin');
  assert.equal(d?.blksize, 1468);
  assert.equal(d?.windowsize, 16);
  assert.deepEqual(d?.options, { blksize: '1468', tsize: String(content['boot.bin']!.length), windowsize: '16' });
});

test('curl downloads at blksize 512, 1468 and 8192', { skip }, async () => {
  for (const bs of [512, 1468, 8192]) {
    const out = path.join(dir, `curl-${bs}.bin`);
    const r = await run(bins.curl, ['-sS', '--tftp-blksize', String(bs), '-o', out, `tftp://127.0.0.1:${port}/boot.bin`]);
    assert.equal(r.code, 0, r.out);
    assert.equal(downloaded(out), sha(content['boot.bin']!), `blksize ${bs}`);
    assert.equal(lastStart('boot.bin')?.blksize, bs);
  }
});

test('curl reports a missing file as a TFTP error', { skip }, async () => {
  const r = await run(bins.curl, ['-sS', '-o', path.join(dir, 'none'), `tftp://127.0.0.1:${port}/no-such-file`]);
  assert.equal(r.code, 68, `curl exit 68 is CURLE_TFTP_NOTFOUND; got ${r.code}: ${r.out}`);
});

test('busybox tftp downloads with and without blksize', { skip }, async () => {
  for (const extra of [[], ['-b', '1468']]) {
    const out = path.join(dir, `bb-${extra.length}.bin`);
    const r = await run(bins.busybox, ['tftp', ...extra, '-g', '-r', 'boot.bin', '-l', out, '127.0.0.1', String(port)]);
    assert.equal(r.code, 0, r.out);
    assert.equal(downloaded(out), sha(content['boot.bin']!), `busybox ${extra.join(' ')}`);
  }
});

test('a generated pxelinux config is served to a real client', { skip }, async () => {
  const out = path.join(dir, 'pxe.cfg');
  const r = await run(bins.curl, ['-sS', '-o', out, `tftp://127.0.0.1:${port}/pxelinux.cfg/01-52-54-00-aa-bb-cc`]);
  assert.equal(r.code, 0, r.out);
  assert.equal(readFileSync(out, 'utf8'), '# generated for 52:54:00:aa:bb:cc\n');
});

test('a traversal attempt from a real client is refused', { skip }, async () => {
  const out = path.join(dir, 'passwd');
  const r = await run(bins.busybox, ['tftp', '-g', '-r', '../../../../etc/passwd', '-l', out, '127.0.0.1', String(port)]);
  assert.notEqual(r.code, 0);
  assert.match(r.out, /\.\./);
  assert.ok(!existsSync(out) || readFileSync(out).length === 0);
});

test('20 concurrent atftp downloads all complete intact', { skip }, async () => {
  const outs = Array.from({ length: 20 }, (_, i) => path.join(dir, `conc-${i}.bin`));
  const rs = await Promise.all(
    outs.map((o, i) => run(bins.atftp, ['--option', `blksize ${i % 2 ? 1468 : 8192}`, '--option', 'windowsize 8', '-g', '-r', 'boot.bin', '-l', o, '127.0.0.1', String(port)], 120_000)),
  );
  for (const [i, r] of rs.entries()) {
    assert.equal(r.code, 0, r.out);
    assert.equal(downloaded(outs[i]!), sha(content['boot.bin']!), outs[i]);
  }
});
