import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs, { mkdtempSync, mkdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cleanName, openInRoot, statInRoot } from '../../src/tftp/paths.js';

let base: string;
let root: string;

before(() => {
  base = mkdtempSync(path.join(tmpdir(), 'phtftp-paths-'));
  root = path.join(base, 'root');
  mkdirSync(path.join(root, 'sub'), { recursive: true });
  writeFileSync(path.join(root, 'ipxe.efi'), 'loader');
  writeFileSync(path.join(root, 'sub', 'file.txt'), 'inner');
  writeFileSync(path.join(base, 'secret'), 'outside the root');
  mkdirSync(path.join(base, 'outdir'));
  writeFileSync(path.join(base, 'outdir', 'f'), 'outside too');
  symlinkSync('../secret', path.join(root, 'link-out'));
  symlinkSync(path.join(base, 'secret'), path.join(root, 'abs-link-out'));
  symlinkSync('../outdir', path.join(root, 'dirlink-out'));
  symlinkSync('sub', path.join(root, 'dirlink-in'));
  symlinkSync('ipxe.efi', path.join(root, 'link-in'));
  symlinkSync('/dev/zero', path.join(root, 'zero'));
  symlinkSync('/etc/passwd', path.join(root, 'passwd'));
  symlinkSync('loop-b', path.join(root, 'loop-a'));
  symlinkSync('loop-a', path.join(root, 'loop-b'));
  assert.equal(spawnSync('mkfifo', [path.join(root, 'fifo')]).status, 0, 'mkfifo');
  if (process.getuid?.() === 0) spawnSync('mknod', [path.join(root, 'null-dev'), 'c', '1', '3']);
});

after(() => rmSync(base, { recursive: true, force: true }));

/** Resolve a requested name the way the server does; returns the content or the refusal code. */
async function fetch(name: string): Promise<{ ok: true; content: string } | { ok: false; code: number; reason: string }> {
  const c = cleanName(name);
  if (!c.ok) return c;
  const r = await openInRoot(root, c.rel);
  if (!r.ok) return r;
  try {
    return { ok: true, content: (await r.handle.readFile()).toString() };
  } finally {
    await r.handle.close();
  }
}

test('plain files, leading slashes and symlinks inside the root are served', async () => {
  assert.deepEqual(await fetch('ipxe.efi'), { ok: true, content: 'loader' });
  assert.deepEqual(await fetch('/ipxe.efi'), { ok: true, content: 'loader' });
  assert.deepEqual(await fetch('//sub//./file.txt'), { ok: true, content: 'inner' });
  assert.deepEqual(await fetch('link-in'), { ok: true, content: 'loader' });
  assert.deepEqual(await fetch('dirlink-in/file.txt'), { ok: true, content: 'inner' });
});

const attacks: string[] = [
  '../secret',
  '/../secret',
  'sub/../../secret',
  '../../../../../../etc/passwd',
  '/../../../../etc/passwd',
  'sub/../ipxe.efi', // harmless but ".." is refused outright
  '..',
  '/..',
  '..\\secret',
  '..\\..\\etc\\passwd',
  'sub\\..\\..\\secret',
  '%2e%2e/secret',
  '%2e%2e%2fsecret',
  '..%2fsecret',
  'ipxe.efi\0../../secret',
  '\0',
  '/etc/passwd', // absolute: looked up inside the root, where it does not exist
  '/etc/shadow',
  'link-out',
  'abs-link-out',
  'dirlink-out/f',
  'zero',
  'passwd',
  'fifo',
  'sub',
  'sub/',
  '/',
  '',
  'loop-a',
  'ipxe.efi/',
  'ipxe.efi/..',
  'sub/file.txt\n',
  Buffer.from([0xc0, 0xae, 0xc0, 0xae, 0x2f]).toString('latin1') + 'secret', // overlong UTF-8 "../"
];

for (const name of attacks) {
  test(`refused: ${JSON.stringify(name)}`, async () => {
    const r = await fetch(name);
    assert.equal(r.ok, false, `served ${JSON.stringify(name)}`);
    if (!r.ok) assert.ok(r.code === 1 || r.code === 2, `code ${r.code}`);
  });
}

test('device node inside the root is refused (needs root to create)', { skip: process.getuid?.() !== 0 ? 'not root: cannot mknod' : false }, async () => {
  const r = await fetch('null-dev');
  assert.equal(r.ok, false);
  if (!r.ok) assert.equal(r.code, 2);
});

test('refusal codes: outside/special -> access violation (2), missing -> not found (1)', async () => {
  const code = async (n: string): Promise<number> => {
    const r = await fetch(n);
    assert.equal(r.ok, false);
    return r.ok ? -1 : r.code;
  };
  assert.equal(await code('../secret'), 2);
  assert.equal(await code('link-out'), 2);
  assert.equal(await code('fifo'), 2);
  assert.equal(await code('sub'), 2);
  assert.equal(await code('zero'), 2);
  assert.equal(await code('missing.bin'), 1);
  assert.equal(await code('/etc/passwd'), 1);
});

test('opening a FIFO does not block', async () => {
  const t0 = Date.now();
  await fetch('fifo');
  assert.ok(Date.now() - t0 < 1000);
});

test('statInRoot (the cache fast path) finds regular files inside the root and nothing else', () => {
  assert.equal(statInRoot(root, 'ipxe.efi')?.real, path.join(realpathSync(root), 'ipxe.efi'));
  assert.equal(statInRoot(root, 'link-in')?.real, path.join(realpathSync(root), 'ipxe.efi'), 'a symlink inside resolves');
  assert.equal(statInRoot(root, 'dirlink-in/file.txt')?.stat.size, 5);
  for (const name of ['link-out', 'abs-link-out', 'dirlink-out/f', 'zero', 'passwd', 'loop-a', 'fifo', 'sub', 'missing', 'null-dev']) {
    assert.equal(statInRoot(root, name), undefined, name);
  }
  assert.equal(statInRoot(path.join(base, 'no-root'), 'ipxe.efi'), undefined);
});

test("statInRoot follows a replaced root within a second (the root's real path is cached that long)", () => {
  const a = path.join(base, 'root-a');
  const b = path.join(base, 'root-b');
  const link = path.join(base, 'root-link');
  fs.mkdirSync(a, { recursive: true });
  fs.mkdirSync(b, { recursive: true });
  fs.writeFileSync(path.join(a, 'f'), 'A');
  fs.writeFileSync(path.join(b, 'f'), 'BB');
  fs.symlinkSync(a, link);
  const t0 = 1_000_000_000;
  assert.equal(statInRoot(link, 'f', t0)?.stat.size, 1);
  fs.unlinkSync(link);
  fs.symlinkSync(b, link);
  assert.equal(statInRoot(link, 'f', t0 + 500)?.stat.size, 1, 'still the old root, inside it');
  assert.equal(statInRoot(link, 'f', t0 + 1500)?.stat.size, 2, 'the new root after a second');
  assert.equal(statInRoot(link, 'f', t0 + 1000)?.stat.size, 2, 'and from then on');
});
