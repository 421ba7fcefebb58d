import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { renderArgv, renderPlain, renderShell, shellQuote, splitWords } from '../../src/remote/template.js';
import { LineSplitter, mapLimit } from '../../src/remote/fanout.js';
import { readSecret, Redactor } from '../../src/remote/secrets.js';
import { parsePowerState } from '../../src/power/drivers.js';
import { templateVars } from '../../src/power/service.js';
import { InvalidInput } from '../../src/nodes/mac.js';
import type { Node } from '../../src/nodes/types.js';

test('shell rendering quotes values so an attribute can never add a second command', () => {
  assert.equal(shellQuote('Gi1/0/3'), 'Gi1/0/3');
  assert.equal(shellQuote(''), "''");
  assert.equal(shellQuote("a'b; reboot"), `'a'\\''b; reboot'`);
  assert.equal(renderShell('power {{action}} outlet-{{node}}', { action: 'cycle', node: 'n1; rm -rf /' }, 'power_cycle_cmd'), "power cycle outlet-'n1; rm -rf /'");
});

test('a template naming an unset placeholder is refused with the known names', () => {
  assert.throws(() => renderShell('power {{outlet}}', { node: 'n1', action: 'on' }, 'power_on_cmd'), (e: Error) => e instanceof InvalidInput && e.message === 'power_on_cmd uses {{outlet}}, which is not set (known: action, node)');
});

test('argv rendering splits like sh (quotes, backslashes) and substitutes inside words without a shell', () => {
  assert.deepEqual(splitWords(`a 'b c' "d \\"e\\"" f\\ g  `), ['a', 'b c', 'd "e"', 'f g']);
  assert.deepEqual(renderArgv('/bin/pdu --node={{node}} "{{rack}} x" \'\'', { node: 'n1', rack: 'r1;reboot' }, 'cmd'), ['/bin/pdu', '--node=n1', 'r1;reboot x', '']);
  assert.throws(() => splitWords("a 'b", 'power_on_cmd'), /power_on_cmd: unterminated ' quote/);
  assert.throws(() => splitWords('   ', 'power_on_cmd'), /power_on_cmd is empty/);
});

test('plain rendering (switch consoles have no quoting) refuses values that are not plain words', () => {
  assert.equal(renderPlain('interface {{port}}', { port: 'Gi1/0/3' }, 'kind ios'), 'interface Gi1/0/3');
  assert.throws(() => renderPlain('description {{node}}', { node: 'a b' }, 'kind ios'), /value of node "a b" is not a plain word/);
});

test('power state is read from the last on/off word of the BMC answer', () => {
  assert.equal(parsePowerState('Chassis Power is on'), 'on');
  assert.equal(parsePowerState('Power: OFF\n'), 'off');
  assert.equal(parsePowerState('was off, now on'), 'on');
  assert.equal(parsePowerState('online'), 'unknown');
});

test('template values never include attributes that look like secrets', () => {
  const node = { name: 'n1', mac: 'aa:bb:cc:dd:ee:ff', ip: '10.0.0.5', group: 'g' } as Node;
  const v = templateVars(node, { bmc_host: 'b1', bmc_password: 'x', api_token: 'y', rack: 'r1' }, 'on');
  assert.equal(v.bmc_password, undefined);
  assert.equal(v.api_token, undefined);
  assert.deepEqual([v.node, v.mac, v.ip, v.group, v.action, v.bmc_host, v.bmc_user, v.rack], ['n1', 'aa:bb:cc:dd:ee:ff', '10.0.0.5', 'g', 'on', 'b1', 'root', 'r1']);
});

test('secret files are read only from <statedir>/secrets/ and scrubbed from any text', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-secret-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, 'secrets'));
  fs.writeFileSync(path.join(dir, 'secrets', 'bmc'), 'hunter2\n');
  assert.equal(readSecret(dir, 'bmc', 'bmc_password_file'), 'hunter2');
  assert.throws(() => readSecret(dir, '../pxeherd.db', 'bmc_password_file'), /bmc_password_file "..\/pxeherd.db" must name a file inside/);
  assert.throws(() => readSecret(dir, '/etc/shadow', 'bmc_password_file'), /must name a file inside/);
  assert.throws(() => readSecret(dir, 'nope', 'bmc_password_file'), /bmc_password_file: cannot read .*nope \(ENOENT\)/);
  const r = new Redactor().add('hunter2').add('hunter').add('');
  assert.equal(r.redact('pw hunter2 and hunter'), 'pw ******** and ********');
});

test('fan-out never runs more than the limit at once and keeps results in input order', async () => {
  let running = 0;
  let peak = 0;
  const out = await mapLimit([5, 1, 4, 2, 3, 0], 3, async (n) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, n * 5));
    running--;
    return n * 10;
  });
  assert.deepEqual(out, [50, 10, 40, 20, 30, 0]);
  assert.equal(peak, 3);
  assert.deepEqual(await mapLimit([], 4, async () => 1), []);
});

test('output is split into whole lines for the node prefix, the unterminated tail flushed at the end', () => {
  const lines: string[] = [];
  const s = new LineSplitter((l) => lines.push(l));
  s.push('one\ntw');
  s.push('o\r\nthr');
  assert.deepEqual(lines, ['one', 'two']);
  s.end();
  assert.deepEqual(lines, ['one', 'two', 'thr']);
  const u: string[] = [];
  const v = new LineSplitter((l) => u.push(l));
  const bytes = Buffer.from('größe\n');
  v.push(bytes.subarray(0, 3));
  v.push(bytes.subarray(3));
  v.end();
  assert.deepEqual(u, ['größe'], 'a character split between packets stays whole');
});
