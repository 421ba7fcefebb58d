import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { installLoaders } from '../../src/tftp/loaders.js';

function logger() {
  const lines: Array<[string, string]> = [];
  return {
    lines,
    info: (_o: object, m?: string) => lines.push(['info', m ?? '']),
    warn: (_o: object, m?: string) => lines.push(['warn', m ?? '']),
  };
}

test('missing loaders are copied from the source directory, existing ones are never overwritten', async (t) => {
  const base = mkdtempSync(path.join(tmpdir(), 'phtftp-loaders-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const src = path.join(base, 'ipxe');
  const root = path.join(base, 'tftproot');
  mkdirSync(src);
  mkdirSync(root);
  writeFileSync(path.join(src, 'undionly.kpxe'), 'from-debian');
  writeFileSync(path.join(src, 'ipxe.efi'), 'from-debian');
  writeFileSync(path.join(root, 'ipxe.efi'), 'admin-built');
  const log = logger();
  const r = await installLoaders(root, log, { sourceDir: src });
  assert.deepEqual(r, { present: ['undionly.kpxe', 'ipxe.efi'], copied: ['undionly.kpxe'], missing: ['snponly.efi'] });
  assert.equal(readFileSync(path.join(root, 'undionly.kpxe'), 'utf8'), 'from-debian');
  assert.equal(readFileSync(path.join(root, 'ipxe.efi'), 'utf8'), 'admin-built');
  assert.ok(log.lines.some(([l, m]) => l === 'info' && m.includes('undionly.kpxe, ipxe.efi')));
  assert.ok(log.lines.some(([l, m]) => l === 'warn' && m.includes('snponly.efi') && m.includes('ipxe')));
});

test("Debian's ipxe package provides all three default loaders", { skip: !existsSync('/usr/lib/ipxe/ipxe.efi') && "Debian's ipxe package is not installed (apt-get install ipxe)" }, async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'phtftp-loaders-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const r = await installLoaders(path.join(root, 'new-root'), logger());
  assert.deepEqual(r.missing, []);
  assert.deepEqual(r.copied, ['undionly.kpxe', 'ipxe.efi', 'snponly.efi']);
});

