import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseGeneratedName } from '../../src/tftp/generated.js';

test('pxelinux per-MAC and default names are recognised', () => {
  assert.deepEqual(parseGeneratedName('pxelinux.cfg/01-aa-bb-cc-dd-ee-ff'), { kind: 'pxelinux', mac: 'aa:bb:cc:dd:ee:ff' });
  assert.deepEqual(parseGeneratedName('pxelinux.cfg/01-AA-BB-CC-DD-EE-0F'), { kind: 'pxelinux', mac: 'aa:bb:cc:dd:ee:0f' });
  assert.deepEqual(parseGeneratedName('pxelinux.cfg/default'), { kind: 'pxelinux' });
  assert.deepEqual(parseGeneratedName('bios/pxelinux.cfg/01-52-54-00-12-34-56'), { kind: 'pxelinux', mac: '52:54:00:12:34:56' });
});

test('pxelinux UUID and hex-IP guesses are not generated', () => {
  assert.equal(parseGeneratedName('pxelinux.cfg/C0A80001'), undefined);
  assert.equal(parseGeneratedName('pxelinux.cfg/564d1234-5678-9abc-def0-123456789abc'), undefined);
  assert.equal(parseGeneratedName('pxelinux.cfg/20-aa-bb-cc-dd-ee-ff'), undefined);
  assert.equal(parseGeneratedName('pxelinux.cfg/01-aa-bb-cc-dd-ee'), undefined);
});

test("grub's per-MAC names are recognised", () => {
  const mac = { kind: 'grub', mac: 'aa:bb:cc:dd:ee:ff' };
  assert.deepEqual(parseGeneratedName('grub/grub.cfg-01-aa-bb-cc-dd-ee-ff'), mac);
  assert.deepEqual(parseGeneratedName('grub/grub.cfg-aa:bb:cc:dd:ee:ff'), mac);
  assert.deepEqual(parseGeneratedName('grub/grub.cfg-aa-bb-cc-dd-ee-ff'), mac);
  assert.deepEqual(parseGeneratedName('boot/grub/grub.cfg-01-AA-BB-CC-DD-EE-FF'), mac);
  assert.deepEqual(parseGeneratedName('grub.cfg-01-aa-bb-cc-dd-ee-ff'), mac);
  assert.deepEqual(parseGeneratedName('grub/grub.cfg'), { kind: 'grub' });
});

test('other names are plain files', () => {
  for (const n of ['undionly.kpxe', 'ipxe.efi', 'grub/grub.cfg-C0A80001', 'grub/grub.cfg-01-aa-bb', 'pxelinux.cfg', 'default', 'grub/x86_64-efi/normal.mod']) {
    assert.equal(parseGeneratedName(n), undefined, n);
  }
});
