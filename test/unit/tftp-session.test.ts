import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ackPacket, decode, errorPacket, encode } from '../../src/tftp/codec.js';
import { Session, type Outcome, type SessionParams } from '../../src/tftp/session.js';
import { BufferSource } from '../../src/tftp/source.js';

/** A session wired to a recorder of sent datagrams and a manual clock. */
function harness(content: Buffer, p: Partial<SessionParams> = {}) {
  let now = 0;
  let timers: Array<{ at: number; fn: () => void; id: number }> = [];
  let nextId = 1;
  const sent: Buffer[] = [];
  let outcome: Outcome | undefined;
  const s = new Session(
    { source: new BufferSource(content), blksize: 512, windowsize: 1, timeoutMs: 1000, retries: 3, ...p },
    {
      send: (m) => sent.push(Array.isArray(m) ? Buffer.concat(m) : m),
      now: () => now,
      setTimer: (fn, ms) => {
        const t = { at: now + ms, fn, id: nextId++ };
        timers.push(t);
        return t.id;
      },
      clearTimer: (id) => {
        timers = timers.filter((t) => t.id !== id);
      },
    },
    (o) => (outcome = o),
  );
  return {
    s,
    sent,
    outcome: () => outcome,
    /** Sent packets since the last call, decoded. */
    take: () => sent.splice(0).map((b) => {
      const d = decode(b);
      assert.ok(d.ok);
      return d.packet;
    }),
    advance(ms: number) {
      const end = now + ms;
      for (;;) {
        timers.sort((a, b) => a.at - b.at);
        const t = timers[0];
        if (!t || t.at > end) break;
        timers.shift();
        now = t.at;
        t.fn();
      }
      now = end;
    },
    ack: (n: number) => s.onPacket(ackPacket(n)),
  };
}

const blocks = (ps: ReturnType<ReturnType<typeof harness>['take']>) => ps.map((p) => (p.op === 'data' ? p.block : `${p.op}`));

test('lock-step transfer without options sends DATA 1 first and ends on the short block', () => {
  const h = harness(Buffer.alloc(1200, 7));
  h.s.start();
  assert.deepEqual(blocks(h.take()), [1]);
  h.ack(1);
  assert.deepEqual(blocks(h.take()), [2]);
  h.ack(2);
  const last = h.take();
  assert.equal(last.length, 1);
  assert.ok(last[0]!.op === 'data' && last[0]!.block === 3 && last[0]!.data.length === 176);
  assert.equal(h.outcome(), undefined);
  h.ack(3);
  assert.deepEqual(h.outcome(), { ok: true, bytes: 1200, durationMs: 0, retransmits: 0 });
});

test('a file that is a multiple of blksize ends with an empty block', () => {
  const h = harness(Buffer.alloc(1024, 1));
  h.s.start();
  h.ack(1);
  h.ack(2);
  const p = h.take();
  assert.ok(p[2]!.op === 'data' && p[2]!.block === 3 && p[2]!.data.length === 0);
  h.ack(3);
  assert.equal(h.outcome()?.ok, true);
});

test('with an OACK, data starts only after ACK 0', () => {
  const oack = encode({ op: 'oack', options: { tsize: '10' }, optionOrder: ['tsize'] });
  const h = harness(Buffer.alloc(10, 1), { oack });
  h.s.start();
  assert.deepEqual(blocks(h.take()), ['oack']);
  h.ack(5); // not 0: ignored
  assert.deepEqual(h.take(), []);
  h.ack(0);
  assert.deepEqual(blocks(h.take()), [1]);
});

test('duplicate ACKs never trigger a resend (no sorcerer\'s apprentice)', () => {
  const h = harness(Buffer.alloc(5000, 1), { windowsize: 4 });
  h.s.start();
  assert.deepEqual(blocks(h.take()), [1, 2, 3, 4]);
  h.ack(4);
  assert.deepEqual(blocks(h.take()), [5, 6, 7, 8]);
  for (let i = 0; i < 5; i++) h.ack(4);
  assert.deepEqual(h.take(), []);
  assert.equal(h.s.duplicateAcks, 5);
});

test('an ACK inside the window restarts the window after the acknowledged block (RFC 7440)', () => {
  const h = harness(Buffer.alloc(10 * 512, 1), { windowsize: 4 });
  h.s.start();
  h.take();
  h.ack(2); // client lost 3
  assert.deepEqual(blocks(h.take()), [3, 4, 5, 6]);
});

test('timeout retransmits the unacknowledged window, then gives up after the retry budget', () => {
  const h = harness(Buffer.alloc(5000, 1), { windowsize: 2, retries: 2 });
  h.s.start();
  assert.deepEqual(blocks(h.take()), [1, 2]);
  h.advance(999);
  assert.deepEqual(h.take(), []);
  h.advance(1);
  assert.deepEqual(blocks(h.take()), [1, 2]);
  h.ack(1);
  assert.deepEqual(blocks(h.take()), [2, 3]);
  h.advance(1000);
  assert.deepEqual(blocks(h.take()), [2, 3]);
  h.advance(1000);
  assert.deepEqual(blocks(h.take()), [2, 3]);
  h.advance(1000);
  const last = h.take();
  assert.equal(last.length, 1);
  assert.ok(last[0]!.op === 'error' && last[0]!.code === 0 && /timed out/.test(last[0]!.message));
  const o = h.outcome();
  assert.ok(o && !o.ok && !o.byClient && o.retransmits === 3 && o.bytes === 512);
});

test('with backoff (no negotiated timeout), retransmissions of one window wait 1x, 2x, then 4x the timeout, and progress resets the wait', () => {
  const h = harness(Buffer.alloc(5000, 1), { retries: 4, backoff: true });
  h.s.start();
  assert.deepEqual(blocks(h.take()), [1]);
  h.advance(1000);
  assert.deepEqual(blocks(h.take()), [1], 'first retransmission after timeoutMs');
  h.advance(1999);
  assert.deepEqual(h.take(), []);
  h.advance(1);
  assert.deepEqual(blocks(h.take()), [1], 'second after 2x');
  h.advance(3999);
  assert.deepEqual(h.take(), []);
  h.advance(1);
  assert.deepEqual(blocks(h.take()), [1], 'third after 4x');
  h.ack(1);
  assert.deepEqual(blocks(h.take()), [2]);
  h.advance(1000);
  assert.deepEqual(blocks(h.take()), [2], 'progress: back to timeoutMs');
  h.advance(2000 + 4000 + 4000);
  assert.deepEqual(blocks(h.take()), [2, 2, 2], 'the retry budget again: three more, 2x, 4x, 4x apart');
  assert.equal(h.outcome(), undefined);
  h.advance(3999);
  assert.deepEqual(h.take(), []);
  h.advance(1);
  const last = h.take();
  assert.ok(last.length === 1 && last[0]!.op === 'error' && /timed out/.test(last[0]!.message), 'then the timeout ERROR');
  const o = h.outcome();
  assert.ok(o && !o.ok && /timed out after 4/.test(o.message) && o.retransmits === 7);
});

test('an unanswered OACK is retransmitted on timeout', () => {
  const oack = encode({ op: 'oack', options: { blksize: '1024' }, optionOrder: ['blksize'] });
  const h = harness(Buffer.alloc(10), { oack, blksize: 1024 });
  h.s.start();
  h.take();
  h.advance(1000);
  assert.deepEqual(blocks(h.take()), ['oack']);
});

test('client error 8 during negotiation ends the transfer as a probe', () => {
  const oack = encode({ op: 'oack', options: { tsize: '10' }, optionOrder: ['tsize'] });
  const h = harness(Buffer.alloc(10), { oack });
  h.s.start();
  h.take();
  h.s.onPacket(errorPacket(8, 'tsize probe'));
  const o = h.outcome();
  assert.ok(o && !o.ok);
  assert.equal(o.code, 8);
  assert.equal(o.byClient, true);
  assert.equal(o.duringNegotiation, true);
  assert.deepEqual(h.take(), [], 'no answer to an error');
  h.advance(10_000);
  assert.deepEqual(h.take(), [], 'no retransmission after the end');
});

test('block numbers roll over from 65535 to 0 and the transfer completes', () => {
  const n = 70_000;
  const content = Buffer.alloc(n * 8 - 3, 9);
  const h = harness(content, { blksize: 8 });
  h.s.start();
  let expect = 1;
  let sawZero = false;
  for (;;) {
    const ps = h.take();
    assert.equal(ps.length, 1);
    const p = ps[0]!;
    assert.ok(p.op === 'data');
    assert.equal(p.block, expect & 0xffff);
    if (p.block === 0) sawZero = true;
    h.ack(p.block);
    if (h.outcome()) break;
    expect++;
  }
  assert.equal(expect, n);
  assert.ok(sawZero);
  assert.deepEqual(h.outcome(), { ok: true, bytes: content.length, durationMs: 0, retransmits: 0 });
});

test('a stale ACK from before the last acknowledged block is ignored', () => {
  const h = harness(Buffer.alloc(5000, 1));
  h.s.start();
  h.ack(1);
  h.ack(2);
  h.take();
  h.ack(1);
  assert.deepEqual(h.take(), []);
  assert.equal(h.outcome(), undefined);
});

test('garbage on the transfer socket is counted and the transfer carries on', () => {
  const h = harness(Buffer.alloc(600, 1));
  h.s.start();
  h.take();
  h.s.onPacket(Buffer.from([0, 3, 0, 1, 1, 2]));
  h.s.onPacket(Buffer.from([1]));
  assert.equal(h.s.badPackets, 2);
  h.ack(1);
  assert.deepEqual(blocks(h.take()), [2]);
});
