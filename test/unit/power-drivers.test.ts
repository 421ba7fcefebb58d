import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ipmiArgv, ipmiFailure } from '../../src/power/drivers.js';
import { checkPin, normalizeFingerprint, tlsOptions, type HttpsRequest, type HttpsResponse } from '../../src/power/https.js';
import { errorText, pickSystem, planAction, powerOf, redfishAction, RedfishError, sessionPath, type RedfishTarget } from '../../src/power/redfish.js';
import type { LocalResult } from '../../src/power/local.js';

const vars = { bmc_host: '10.0.0.50', bmc_port: '', bmc_user: 'admin', node: 'n1' };

test('ipmitool argv: lanplus, password through -E only, -C when ipmi_cipher is set, -v for login errors, bootdev pxe for pxe', () => {
  assert.deepEqual(ipmiArgv({ attrs: { bmc_host: '10.0.0.50' }, vars, action: 'status' }), ['ipmitool', '-I', 'lanplus', '-H', '10.0.0.50', '-p', '623', '-U', 'admin', '-E', '-v', 'chassis', 'power', 'status']);
  assert.deepEqual(ipmiArgv({ attrs: { bmc_host: '10.0.0.50', bmc_port: '6230', ipmi_cipher: '3' }, vars, action: 'pxe' }).slice(5), ['-p', '6230', '-U', 'admin', '-E', '-C', '3', '-v', 'chassis', 'bootdev', 'pxe']);
  assert.deepEqual(ipmiArgv({ attrs: { power_cycle_cmd: 'chassis power reset', ipmitool: '/opt/ipmitool' }, vars, action: 'cycle' }).slice(-3), ['chassis', 'power', 'reset']);
  assert.equal(ipmiArgv({ attrs: {}, vars, action: 'cycle' })[0], 'ipmitool');
  assert.throws(() => ipmiArgv({ attrs: { ipmi_cipher: '3; reboot' }, vars, action: 'on' }), /ipmi_cipher must be a cipher suite number such as 3 or 17, not "3; reboot"/);
});

const res = (o: Partial<LocalResult>): LocalResult => ({ exit: 1, signal: null, stdout: '', stderr: '', timedOut: false, ...o });
const ctx = { host: '10.0.0.50', port: '623', user: 'admin', passwordFile: 'rack12', timeoutMs: 5000 };

test('ipmitool failures say what to do: wrong password, unknown user, no answer, timeout, ipmitool missing', () => {
  assert.equal(ipmiFailure(res({ exit: 0, stdout: 'Chassis Power is on' }), ctx), undefined);
  assert.equal(
    ipmiFailure(res({ stderr: 'Loading IANA PEN Registry...\n> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n' }), ctx),
    'BMC 10.0.0.50:623 refused the login for user admin (wrong password: ipmitool says "RAKP 2 HMAC is invalid"): check bmc_user and the password in <statedir>/secrets/rack12',
  );
  assert.match(ipmiFailure(res({ stderr: 'RAKP 2 message indicates an error : unauthorized name\nError: Unable to establish IPMI v2 / RMCP+ session\n' }), ctx)!, /refused the login for user admin \(no user "admin" on it: /);
  assert.equal(
    ipmiFailure(res({ stderr: 'Loading IANA PEN Registry...\nError: Unable to establish IPMI v2 / RMCP+ session\n' }), ctx),
    'BMC 10.0.0.50:623 did not answer (ipmitool: Error: Unable to establish IPMI v2 / RMCP+ session): check bmc_host and bmc_port, that the BMC is reachable and IPMI over LAN is enabled (ipmi_cipher selects the cipher suite)',
  );
  assert.match(ipmiFailure(res({ exit: null, signal: 'SIGKILL', timedOut: true }), ctx)!, /^BMC 10\.0\.0\.50:623 did not answer within 5 s: check bmc_host and bmc_port/);
  assert.match(ipmiFailure(res({ spawnError: 'ipmitool: not found' }), ctx)!, /apt-get install ipmitool/);
  assert.equal(ipmiFailure(res({ stderr: 'Invalid completion code received: Invalid command\nSet Chassis Boot Parameter 5 failed: Invalid data field in request\n' }), ctx), 'ipmitool: exit code 1: Set Chassis Boot Parameter 5 failed: Invalid data field in request');
});

// ---- Redfish: request building and answer parsing (no Redfish server exists here) -----------

const SYSTEM = {
  '@odata.id': '/redfish/v1/Systems/1',
  '@odata.etag': 'W/"abc"',
  Id: '1',
  PowerState: 'On',
  Boot: { BootSourceOverrideEnabled: 'Disabled', BootSourceOverrideTarget: 'None', 'BootSourceOverrideTarget@Redfish.AllowableValues': ['None', 'Pxe', 'Hdd'] },
  Actions: { '#ComputerSystem.Reset': { target: '/redfish/v1/Systems/1/Actions/ComputerSystem.Reset', 'ResetType@Redfish.AllowableValues': ['On', 'ForceOff', 'GracefulShutdown', 'ForceRestart'] } },
};

test('redfish: PowerState maps to on/off; power actions are idempotent and use the Reset action target', () => {
  assert.equal(powerOf({ PowerState: 'PoweringOn' }), 'on');
  assert.equal(powerOf({ PowerState: 'Off' }), 'off');
  assert.equal(powerOf({}), 'unknown');
  assert.deepEqual(planAction('on', SYSTEM), { requests: [], note: 'already on' });
  assert.deepEqual(planAction('off', SYSTEM).requests, [{ method: 'POST', path: '/redfish/v1/Systems/1/Actions/ComputerSystem.Reset', body: { ResetType: 'ForceOff' } }]);
  assert.deepEqual(planAction('off', SYSTEM, { offType: 'GracefulShutdown' }).requests[0]!.body, { ResetType: 'GracefulShutdown' });
  assert.deepEqual(planAction('cycle', SYSTEM).requests[0]!.body, { ResetType: 'ForceRestart' });
  assert.deepEqual(planAction('cycle', { ...SYSTEM, PowerState: 'Off' }), { requests: [{ method: 'POST', path: '/redfish/v1/Systems/1/Actions/ComputerSystem.Reset', body: { ResetType: 'On' } }], note: 'was off: powered on' });
  // No ForceRestart/PowerCycle offered: off, then on.
  const noRestart = { ...SYSTEM, Actions: { '#ComputerSystem.Reset': { target: '/x/Reset', 'ResetType@Redfish.AllowableValues': ['On', 'ForceOff'] } } };
  assert.deepEqual(planAction('cycle', noRestart).requests.map((r) => r.body), [{ ResetType: 'ForceOff' }, { ResetType: 'On' }]);
  // No Actions at all: the target is derived from @odata.id, every type assumed allowed.
  assert.equal(planAction('on', { '@odata.id': '/redfish/v1/Systems/abc', PowerState: 'Off' }).requests[0]!.path, '/redfish/v1/Systems/abc/Actions/ComputerSystem.Reset');
  assert.throws(() => planAction('off', { ...noRestart, Actions: { '#ComputerSystem.Reset': { target: '/x', 'ResetType@Redfish.AllowableValues': ['On'] } } }), /does not offer ResetType ForceOff \(it allows On\)/);
});

test('redfish: pxe is one PATCH of Boot {Once, Pxe} with the ETag; a BMC without Pxe among the targets is refused', () => {
  assert.deepEqual(planAction('pxe', SYSTEM).requests, [
    { method: 'PATCH', path: '/redfish/v1/Systems/1', body: { Boot: { BootSourceOverrideEnabled: 'Once', BootSourceOverrideTarget: 'Pxe' } }, headers: { 'If-Match': 'W/"abc"' } },
  ]);
  assert.deepEqual(planAction('pxe', SYSTEM, { bootMode: 'UEFI' }).requests[0]!.body, { Boot: { BootSourceOverrideEnabled: 'Once', BootSourceOverrideTarget: 'Pxe', BootSourceOverrideMode: 'UEFI' } });
  assert.throws(() => planAction('pxe', { ...SYSTEM, Boot: { 'BootSourceOverrideTarget@Redfish.AllowableValues': ['Hdd', 'Cd'] } }), /does not offer boot override target Pxe \(it allows Hdd, Cd\)/);
});

test('redfish: error objects, session locations and system collections are read as the schema says', () => {
  const body = JSON.stringify({ error: { code: 'Base.1.8.GeneralError', message: 'A general error has occurred.', '@Message.ExtendedInfo': [{ Message: 'The action ComputerSystem.Reset was submitted with an invalid ResetType.' }] } });
  assert.equal(errorText(400, body), 'HTTP 400: A general error has occurred.; The action ComputerSystem.Reset was submitted with an invalid ResetType.');
  assert.equal(errorText(502, '<html>Bad Gateway</html>'), 'HTTP 502: <html>Bad Gateway</html>');
  assert.equal(sessionPath('https://10.0.0.5/redfish/v1/SessionService/Sessions/7', {}), '/redfish/v1/SessionService/Sessions/7');
  assert.equal(sessionPath(undefined, { '@odata.id': '/redfish/v1/SessionService/Sessions/8' }), '/redfish/v1/SessionService/Sessions/8');
  assert.equal(pickSystem({ Members: [{ '@odata.id': '/redfish/v1/Systems/1' }] }, 'bmc'), '/redfish/v1/Systems/1');
  assert.throws(() => pickSystem({ Members: [{ '@odata.id': '/redfish/v1/Systems/a' }, { '@odata.id': '/redfish/v1/Systems/b' }] }, 'bmc'), /manages 2 systems \(\/redfish\/v1\/Systems\/a, \/redfish\/v1\/Systems\/b\): set attr redfish_system/);
  assert.throws(() => pickSystem({ Members: [] }, 'bmc'), /lists no ComputerSystem/);
});

/** Answers from a list, in order, recording each request: checks what the client sends. */
function scripted(answers: Array<Partial<HttpsResponse> & { json?: unknown }>) {
  const sent: HttpsRequest[] = [];
  const http = async (r: HttpsRequest): Promise<HttpsResponse> => {
    sent.push(r);
    const a = answers.shift();
    if (!a) throw new Error(`unexpected request ${r.method} ${r.path}`);
    return { status: a.status ?? 200, headers: a.headers ?? {}, body: a.body ?? (a.json === undefined ? '' : JSON.stringify(a.json)) };
  };
  return { http, sent };
}

const target = (o: Partial<RedfishTarget> = {}): RedfishTarget => ({ host: '10.0.0.5', port: 443, user: 'admin', password: 'pw', auth: 'session', tls: {}, timeoutMs: 5000, ...o });

test('redfish client: session login, the system from the collection, the PATCH with X-Auth-Token, then logout', async () => {
  const { http, sent } = scripted([
    { status: 201, headers: { 'x-auth-token': 'tok123', location: '/redfish/v1/SessionService/Sessions/9' }, json: { '@odata.id': '/redfish/v1/SessionService/Sessions/9' } },
    { json: { Members: [{ '@odata.id': '/redfish/v1/Systems/1' }] } },
    { json: SYSTEM },
    { status: 204 },
    { status: 204 },
  ]);
  const r = await redfishAction(target(), 'pxe', http);
  assert.equal(r.output, 'boot override Pxe once (system 1, was On)');
  assert.deepEqual(sent.map((s) => `${s.method} ${s.path}`), ['POST /redfish/v1/SessionService/Sessions', 'GET /redfish/v1/Systems', 'GET /redfish/v1/Systems/1', 'PATCH /redfish/v1/Systems/1', 'DELETE /redfish/v1/SessionService/Sessions/9']);
  assert.deepEqual(JSON.parse(sent[0]!.body!), { UserName: 'admin', Password: 'pw' });
  assert.equal(sent[0]!.headers['X-Auth-Token'], undefined);
  for (const s of sent.slice(1)) assert.equal(s.headers['X-Auth-Token'], 'tok123');
  assert.equal(sent[3]!.headers['If-Match'], 'W/"abc"');
  assert.equal(sent[3]!.headers['Content-Type'], 'application/json');
  assert.deepEqual(JSON.parse(sent[3]!.body!), { Boot: { BootSourceOverrideEnabled: 'Once', BootSourceOverrideTarget: 'Pxe' } });
});

test('redfish client: basic auth on every request; 401 is a refused login naming the BMC; the session is closed after an error', async () => {
  const basic = scripted([{ json: { ...SYSTEM, PowerState: 'Off' } }]);
  const st = await redfishAction(target({ auth: 'basic', system: '/redfish/v1/Systems/1', port: 8443 }), 'status', basic.http);
  assert.deepEqual(st, { power: 'off', output: 'PowerState Off (system 1)' });
  assert.equal(basic.sent[0]!.headers.Authorization, `Basic ${Buffer.from('admin:pw').toString('base64')}`);
  assert.equal(basic.sent[0]!.port, 8443);

  const denied = scripted([{ status: 401, json: { error: { message: 'Invalid username or password' } } }]);
  await assert.rejects(redfishAction(target(), 'on', denied.http), (e: RedfishError) => e.kind === 'auth' && e.message === 'BMC 10.0.0.5 refused user admin (HTTP 401: Invalid username or password): check bmc_user and the password in bmc_password_file');

  const failing = scripted([
    { status: 201, headers: { 'x-auth-token': 't', location: '/redfish/v1/SessionService/Sessions/3' } },
    { json: SYSTEM },
    { status: 409, json: { error: { message: 'The request could not be completed.' } } },
    { status: 204 },
  ]);
  await assert.rejects(redfishAction(target({ system: '/redfish/v1/Systems/1' }), 'cycle', failing.http), /BMC 10\.0\.0\.5: POST \/redfish\/v1\/Systems\/1\/Actions\/ComputerSystem\.Reset failed: HTTP 409: The request could not be completed\./);
  assert.equal(failing.sent.at(-1)!.method, 'DELETE', 'logged out after the failure');
});

test('redfish client: an unreachable BMC and an untrusted certificate become errors that say which attribute to set', async () => {
  const refused = async () => {
    throw Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:443'), { code: 'ECONNREFUSED' });
  };
  await assert.rejects(redfishAction(target(), 'status', refused), (e: RedfishError) => e.kind === 'unreachable' && /did not answer \(ECONNREFUSED\): check bmc_host and bmc_port/.test(e.message));
  const untrusted = async () => {
    throw Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
  };
  await assert.rejects(redfishAction(target(), 'status', untrusted), (e: RedfishError) => e.kind === 'tls' && /set bmc_ca_file .* or bmc_fingerprint .*bmc_insecure=yes/.test(e.message));
});

test('TLS policy: verification on unless insecure; a pin replaces the chain check and must match', () => {
  assert.deepEqual(tlsOptions({}), { rejectUnauthorized: true });
  assert.deepEqual(tlsOptions({ ca: 'PEM' }), { rejectUnauthorized: true, ca: 'PEM' });
  assert.equal(tlsOptions({ fingerprint: 'AA' }).rejectUnauthorized, false);
  assert.equal(tlsOptions({ insecure: true }).rejectUnauthorized, false);
  const fp = 'ab:'.repeat(31) + 'ab';
  assert.equal(normalizeFingerprint(fp), 'AB'.repeat(32));
  assert.equal(normalizeFingerprint('sha256=' + 'cd'.repeat(32)), 'CD'.repeat(32));
  assert.equal(normalizeFingerprint('abc'), undefined);
  assert.equal(checkPin(fp.toUpperCase(), 'ab'.repeat(32)), undefined);
  assert.match(checkPin('CD:'.repeat(31) + 'CD', fp)!, /^certificate fingerprint C{1}D.* is not the pinned AB.*: if the BMC's certificate was replaced on purpose, set bmc_fingerprint/);
  assert.equal(checkPin(undefined, fp), 'the BMC presented no certificate');
});

test('power events read as one line on the timeline; power.fail counts as a failure', async () => {
  const { summarize, isFailure } = await import('../../src/admin/timeline.js');
  const ev = { kind: 'power.fail', detail: { action: 'on', driver: 'ipmi', ok: false, power: null, error: 'BMC 10.0.0.5:623 refused the login for user admin', skipped: false } };
  assert.equal(summarize(ev), 'on · driver ipmi · BMC 10.0.0.5:623 refused the login for user admin');
  assert.equal(isFailure(ev), true);
  assert.equal(summarize({ kind: 'power.status', detail: { action: 'status', driver: 'redfish', ok: true, power: 'off' } }), 'status · driver redfish · power off');
});
