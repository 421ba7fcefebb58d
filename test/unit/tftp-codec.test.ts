import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ackBlock, dataHeader, decode, encode, errorPacket, toNetascii, type Packet } from '../../src/tftp/codec.js';

function roundTrip(p: Packet): void {
  const d = decode(encode(p));
  assert.ok(d.ok, `decode failed: ${JSON.stringify(d)}`);
  assert.deepEqual(d.packet, p);
}

test('RRQ with options round-trips, option order kept', () => {
  roundTrip({
    op: 'rrq',
    filename: 'pxelinux.cfg/01-aa-bb-cc-dd-ee-ff',
    mode: 'octet',
    options: { tsize: '0', blksize: '1468', windowsize: '16' },
    optionOrder: ['tsize', 'blksize', 'windowsize'],
  });
});

test('WRQ, DATA, ACK, ERROR and OACK round-trip', () => {
  roundTrip({ op: 'wrq', filename: 'x', mode: 'netascii', options: {}, optionOrder: [] });
  roundTrip({ op: 'data', block: 65535, data: Buffer.from('hello') });
  roundTrip({ op: 'data', block: 0, data: Buffer.alloc(0) });
  roundTrip({ op: 'ack', block: 12345 });
  roundTrip({ op: 'error', code: 8, message: 'option refused' });
  roundTrip({ op: 'oack', options: { blksize: '8192', tsize: '123' }, optionOrder: ['blksize', 'tsize'] });
});

test('request decoding lower-cases mode and option names and keeps the first repeated option', () => {
  const raw = Buffer.from('\x00\x01file\x00OCTET\x00BlkSize\x001024\x00blksize\x00512\x00', 'latin1');
  const d = decode(raw);
  assert.ok(d.ok && d.packet.op === 'rrq');
  assert.equal(d.packet.mode, 'octet');
  assert.deepEqual(d.packet.options, { blksize: '1024' });
  assert.deepEqual(d.packet.optionOrder, ['blksize']);
});

test('malformed packets decode to typed errors, never throw', () => {
  const cases: Array<[string, Buffer, string]> = [
    ['empty', Buffer.alloc(0), 'short'],
    ['one byte', Buffer.from([0]), 'short'],
    ['unknown opcode', Buffer.from([0, 9, 1, 2]), 'opcode'],
    ['opcode 0', Buffer.from([0, 0]), 'opcode'],
    ['RRQ unterminated filename', Buffer.from('\x00\x01file', 'latin1'), 'unterminated'],
    ['RRQ without mode', Buffer.from('\x00\x01file\x00', 'latin1'), 'short'],
    ['RRQ unterminated mode', Buffer.from('\x00\x01file\x00octet', 'latin1'), 'unterminated'],
    ['RRQ bad mode', Buffer.from('\x00\x01file\x00binary\x00', 'latin1'), 'mode'],
    ['RRQ empty filename', Buffer.from('\x00\x01\x00octet\x00', 'latin1'), 'filename'],
    ['RRQ option without value', Buffer.from('\x00\x01f\x00octet\x00blksize\x00', 'latin1'), 'options'],
    ['RRQ empty option name', Buffer.from('\x00\x01f\x00octet\x00\x00512\x00', 'latin1'), 'options'],
    ['DATA short', Buffer.from([0, 3, 1]), 'short'],
    ['ACK short', Buffer.from([0, 4, 1]), 'short'],
    ['ERROR short', Buffer.from([0, 5, 0]), 'short'],
    ['OACK odd', Buffer.from('\x00\x06blksize\x00', 'latin1'), 'options'],
  ];
  for (const [name, buf, want] of cases) {
    const d = decode(buf);
    assert.equal(d.ok, false, name);
    if (!d.ok) assert.equal(d.error, want, name);
  }
});

test('random garbage never makes decode throw', () => {
  let seed = 42;
  const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let i = 0; i < 5000; i++) {
    const len = Math.floor(rnd() * 40);
    const buf = Buffer.alloc(len);
    for (let j = 0; j < len; j++) buf[j] = rnd() < 0.3 ? 0 : Math.floor(rnd() * 256);
    if (len >= 2 && rnd() < 0.7) buf[0] = 0, (buf[1] = 1 + Math.floor(rnd() * 6));
    const d = decode(buf);
    assert.equal(typeof d.ok, 'boolean');
  }
});

test('ERROR without terminating NUL is accepted (some clients omit it)', () => {
  const d = decode(Buffer.from('\x00\x05\x00\x08tsize only', 'latin1'));
  assert.ok(d.ok && d.packet.op === 'error');
  assert.equal(d.packet.code, 8);
  assert.equal(d.packet.message, 'tsize only');
});

test('errorPacket keeps messages printable ASCII and NUL-terminated', () => {
  const p = errorPacket(2, 'bad\nname é');
  assert.equal(p[p.length - 1], 0);
  const d = decode(p);
  assert.ok(d.ok && d.packet.op === 'error');
  assert.equal(d.packet.code, 2);
  assert.equal(d.packet.message, 'bad?name ?');
});

test('ackBlock reads ACKs in place and rejects everything else', () => {
  assert.equal(ackBlock(Buffer.from([0, 4, 0xff, 0xfe])), 65534);
  assert.equal(ackBlock(Buffer.from([0, 4, 0, 0, 99])), 0);
  assert.equal(ackBlock(Buffer.from([0, 3, 0, 1])), -1);
  assert.equal(ackBlock(Buffer.from([1, 4, 0, 1])), -1);
  assert.equal(ackBlock(Buffer.from([0, 4, 0])), -1);
});

test('dataHeader writes opcode 3 and the 16-bit block', () => {
  assert.deepEqual([...dataHeader(0x1234)], [0, 3, 0x12, 0x34]);
  assert.deepEqual([...dataHeader(0)], [0, 3, 0, 0]);
});

test('netascii turns LF into CR LF and CR into CR NUL', () => {
  assert.deepEqual(toNetascii(Buffer.from('a\nb\rc\r\n')), Buffer.from('a\r\nb\r\x00c\r\x00\r\n', 'latin1'));
  const plain = Buffer.from('no line ends');
  assert.equal(toNetascii(plain), plain);
});
