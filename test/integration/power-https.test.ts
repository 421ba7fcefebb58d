/**
 * The redfish driver's HTTPS transport against a real TLS server on loopback (Node's own, with
 * a certificate made by openssl): the certificate policy — verification on by default, a CA
 * file, a pinned fingerprint, insecure only when asked — and that no request (with its
 * credentials) is written before the pin is checked. The server is a TLS endpoint, not a
 * Redfish service: the Redfish protocol itself is covered by units in power-drivers.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { httpsRequest, TlsError, type HttpsRequest } from '../../src/power/https.js';
import { which } from '../lab/lab.js';

// Ports 18390-18399 belong to this file.
const why = which('openssl') ? undefined : 'needs openssl (Debian package openssl)';

let dir = '';
let cert = '';
let server: https.Server | undefined;
let port = 0;
const seen: Array<{ path: string; authorization?: string }> = [];

before(() => {
  if (why) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=bmc.lab', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
  cert = fs.readFileSync(path.join(dir, 'cert.pem'), 'utf8');
  server = https.createServer({ key: fs.readFileSync(path.join(dir, 'key.pem')), cert }, (req, res) => {
    seen.push({ path: req.url ?? '', authorization: req.headers.authorization });
    res.setHeader('Content-Type', 'application/json');
    res.end('{"ok":true}');
  });
  return new Promise<void>((resolve) => server!.listen(18390, '127.0.0.1', () => ((port = (server!.address() as AddressInfo).port), resolve())));
});

after(() => {
  server?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const req = (tls: HttpsRequest['tls'], p = '/redfish/v1/Systems'): HttpsRequest => ({ method: 'GET', host: '127.0.0.1', port, path: p, headers: { Authorization: 'Basic c2VjcmV0' }, tls, timeoutMs: 5000 });

test('a self-signed BMC certificate is refused by default, before any request is sent', { skip: why }, async () => {
  const n = seen.length;
  await assert.rejects(httpsRequest(req({})), (e: NodeJS.ErrnoException) => e.code === 'DEPTH_ZERO_SELF_SIGNED_CERT');
  assert.equal(seen.length, n, 'the server never saw the request');
});

test('the CA file makes it trusted; the answer comes back with status, headers and body', { skip: why }, async () => {
  const r = await httpsRequest(req({ ca: cert }, '/redfish/v1'));
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'application/json');
  assert.equal(r.body, '{"ok":true}');
  assert.equal(seen.at(-1)!.authorization, 'Basic c2VjcmV0');
});

test('a pinned fingerprint: the right one connects, a wrong one is refused and the credentials never leave', { skip: why }, async () => {
  const fp = new crypto.X509Certificate(cert).fingerprint256;
  assert.equal((await httpsRequest(req({ fingerprint: fp }))).status, 200);
  const n = seen.length;
  const wrong = 'AB:'.repeat(31) + 'AB';
  await assert.rejects(httpsRequest(req({ fingerprint: wrong })), (e: Error) => e instanceof TlsError && /^certificate fingerprint [0-9A-F]{64} is not the pinned (AB){32}/.test(e.message));
  assert.equal(seen.length, n, 'nothing was sent to the BMC with the wrong certificate');
});

test('insecure skips the check only when asked; a closed port is an error, not a hang', { skip: why }, async () => {
  assert.equal((await httpsRequest(req({ insecure: true }))).status, 200);
  await assert.rejects(httpsRequest({ ...req({ insecure: true }), port: 18399 }), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED');
});
