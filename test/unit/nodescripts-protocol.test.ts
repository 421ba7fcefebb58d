import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestLine } from '../../src/provisiond/protocol.js';
import { macFromArpTable } from '../../src/provisiond/arp.js';
import { encodeRequest, ResponseDecoder } from '../../src/nodescripts/helper-spawner.js';

test('provisiond request: state with nodeid and nodename', () => {
  assert.deepEqual(parseRequestLine('init nodeid=01:AA:BB:CC:DD:EE:FF nodename=n7\r\n'), {
    ok: true,
    req: { kind: 'state', state: 'init', nodeid: '01:AA:BB:CC:DD:EE:FF', nodename: 'n7', params: { nodeid: '01:AA:BB:CC:DD:EE:FF', nodename: 'n7' } },
  });
  const bare = parseRequestLine('ready');
  assert.ok(bare.ok && bare.req.kind === 'state' && bare.req.nodeid === undefined);
});

test('provisiond request: ping and log', () => {
  assert.deepEqual(parseRequestLine('ping abc123'), { ok: true, req: { kind: 'ping', token: 'abc123' } });
  assert.deepEqual(parseRequestLine('log disk sda failed'), { ok: true, req: { kind: 'log', message: 'disk sda failed' } });
});

test('provisiond request: hostile lines are typed errors, never exceptions', () => {
  for (const line of ['', '   ', '../etc nodeid=x', 'INIT', 'init;reboot', 'a'.repeat(40), 'init nodeid', 'init =x', 'init nodeid=a nodeid=b', 'init \x00', 'init\x1b[2J', 'ïnit', 'init nodeid=\u00ff']) {
    const r = parseRequestLine(line);
    assert.equal(r.ok, false, `accepted ${JSON.stringify(line)}`);
    if (!r.ok) assert.ok(r.error.length > 0);
  }
});

test('ARP table lookup takes completed entries only', () => {
  const text = [
    'IP address       HW type     Flags       HW address            Mask     Device',
    '10.0.0.5         0x1         0x2         52:54:00:12:34:56     *        br0',
    '10.0.0.6         0x1         0x0         00:00:00:00:00:00     *        br0',
    '10.0.0.50        0x1         0x2         52:54:00:aa:aa:aa     *        br0',
  ].join('\n');
  assert.equal(macFromArpTable(text, '10.0.0.5'), '52:54:00:12:34:56');
  assert.equal(macFromArpTable(text, '10.0.0.6'), undefined);
  assert.equal(macFromArpTable(text, '10.0.0.'), undefined);
});

test('spawner helper codec: request layout and responses split across chunks', () => {
  const req = encodeRequest(7, { path: '/x', cwd: '/', env: { A: '1' }, timeoutMs: 1500, graceMs: 10, maxStdout: 100, maxStderr: 50 });
  assert.equal(req.readUInt32LE(0), req.length - 4);
  assert.equal(req.readUInt32LE(4), 7);
  assert.equal(req.readUInt32LE(8), 1500);
  assert.equal(req.readUInt32LE(24), 3);
  assert.equal(req.subarray(28).toString(), '/x\0/\0A=1\0');

  const resp = (id: number, kind: number, value: number, out: string, err: string) => {
    const o = Buffer.from(out);
    const e = Buffer.from(err);
    const b = Buffer.alloc(4 + 24 + o.length + e.length);
    b.writeUInt32LE(24 + o.length + e.length, 0);
    b.writeUInt32LE(id, 4);
    b.writeInt32LE(1234, 8);
    b[12] = kind;
    b[13] = 1;
    b.writeInt32LE(value, 16);
    b.writeUInt32LE(o.length, 20);
    o.copy(b, 24);
    b.writeUInt32LE(e.length, 24 + o.length);
    e.copy(b, 28 + o.length);
    return b;
  };
  const all = Buffer.concat([resp(1, 0, 3, 'out', 'err'), resp(2, 1, 9, '', ''), resp(3, 2, 13, '', '')]);
  const dec = new ResponseDecoder();
  const got = [];
  for (let i = 0; i < all.length; i += 5) got.push(...dec.push(all.subarray(i, i + 5)).responses);
  assert.equal(got.length, 3);
  assert.equal(got[0]!.result.code, 3);
  assert.equal(got[0]!.result.stdout.toString(), 'out');
  assert.equal(got[0]!.result.stderr.toString(), 'err');
  assert.equal(got[0]!.result.timedOut, true);
  assert.equal(got[1]!.result.signal, 'SIGKILL');
  assert.equal(got[1]!.result.code, null);
  assert.match(got[2]!.result.spawnError!, /EACCES/);
  assert.ok(new ResponseDecoder().push(Buffer.from([1, 0, 0, 0, 0])).error);
});
