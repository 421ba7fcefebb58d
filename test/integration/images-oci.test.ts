import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { importOci } from '../../src/images/oci/index.js';
import { ImageError } from '../../src/images/errors.js';
import { describeTree, diffTrees, type FileFacts } from '../helpers/fstree.js';
import { freePort } from '../lab/procs.js';

// An image built with umoci (three layers: umoci's own diff with a whiteout, and a layer added
// verbatim with an opaque directory), copied by skopeo into an oci-archive, a docker-archive and
// two real registries (Debian's docker-registry on loopback, one of them behind token auth served
// by this test), then imported from each and compared file by file with what umoci unpacks.
const tools = ['umoci', 'skopeo', 'docker-registry', 'setcap', 'getfattr', 'setfattr', 'openssl', 'tar'];
const missing = tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
const skip =
  process.getuid?.() !== 0
    ? 'building and importing images with owners, setuid bits and capabilities needs root'
    : missing.length
      ? `needs ${missing.join(', ')} (Debian packages umoci skopeo docker-registry libcap2-bin attr openssl tar)`
      : undefined;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-oci-test-'));
const children: ChildProcess[] = [];
const servers: http.Server[] = [];
after(async () => {
  for (const c of children) c.kill('SIGTERM');
  for (const s of servers) s.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});
const sh = (cmd: string, cwd?: string) => execFileSync('sh', ['-c', cmd], { cwd, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 }).toString();
// skopeo talking to the token service served by this very process must not block its event loop.
const shAsync = async (cmd: string) => (await promisify(execFile)('sh', ['-c', cmd], { maxBuffer: 64 << 20 })).stdout;
let n = 0;
const fresh = (what: string) => fs.mkdtempSync(path.join(tmp, `${what}-${n++}-`));

const layout = path.join(tmp, 'layout');
const IMAGE = `${layout}:t`;
let reference: Map<string, FileFacts>;
const ociArchive = path.join(tmp, 'img.oci.tar');
const dockerArchive = path.join(tmp, 'img.docker.tar');
let registry = '';
let tokenRegistry = '';
let registryStore = '';
const USER = 'alice';
const PASSWORD = 'correct horse';

function buildImage(): void {
  sh(`umoci init --layout ${layout} && umoci new --image ${IMAGE}`);
  // Layer 1: a small root filesystem with everything a real one carries.
  const b1 = path.join(tmp, 'bundle1');
  sh(`umoci unpack --image ${IMAGE} ${b1}`);
  sh(
    [
      'mkdir -p etc usr/bin usr/sbin usr/lib home/alice opq/sub var/log srv/owned',
      'echo "NAME=pxeherd-test" > etc/os-release && echo secret > etc/gone && chmod 0600 etc/gone',
      'echo lower1 > opq/lower1 && echo lower2 > opq/sub/lower2',
      'cp /bin/true usr/bin/su && chmod 4755 usr/bin/su && cp /bin/true usr/bin/wall && chown 0:5 usr/bin/wall && chmod 2755 usr/bin/wall',
      'cp /bin/true usr/bin/ping && setcap cap_net_raw+ep usr/bin/ping',
      'echo notes > home/alice/notes && chown -R 1000:1000 home/alice && chmod 0700 home/alice',
      'setfattr -n user.origin -v pxeherd home/alice/notes',
      'head -c 200000 /dev/urandom > usr/lib/big && ln usr/lib/big usr/lib/big-hl && ln usr/lib/big usr/bin/big-hl2',
      'ln -s /usr/bin/su usr/sbin/su-abs && ln -s ../bin/su usr/sbin/su-rel && ln -s ../../etc/os-release home/alice/os',
      'chmod 1777 var/log && echo x > srv/owned/file && chown -R 4242:4343 srv/owned',
    ].join(' && '),
    path.join(b1, 'rootfs'),
  );
  sh(`umoci repack --image ${IMAGE} ${b1}`);
  // Layer 2: umoci's diff — a removed file (a .wh. whiteout), a changed owner, a new file.
  const b2 = path.join(tmp, 'bundle2');
  sh(`umoci unpack --image ${IMAGE} ${b2}`);
  sh('rm etc/gone && chown 33:33 srv/owned/file && echo "VERSION=2" >> etc/os-release && echo new > usr/lib/added', path.join(b2, 'rootfs'));
  sh(`umoci repack --image ${IMAGE} ${b2}`);
  // Layer 3, added verbatim: an opaque directory (lower content gone, its own kept) and a whiteout of a hard-linked name.
  const l3 = path.join(tmp, 'layer3');
  fs.mkdirSync(l3);
  sh('mkdir -p opq usr/bin && touch opq/.wh..wh..opq usr/bin/.wh.big-hl2 && echo upper > opq/upper', l3);
  sh(`tar --format=posix --numeric-owner --owner=0 --group=0 -cf ${l3}.tar -C ${l3} opq usr`);
  sh(`umoci raw add-layer --image ${IMAGE} ${l3}.tar`);
  const ref = path.join(tmp, 'reference');
  sh(`umoci unpack --image ${IMAGE} ${ref}`);
  reference = describeTree(path.join(ref, 'rootfs'));
  sh(`skopeo copy -q oci:${IMAGE} oci-archive:${ociArchive}:t`);
  sh(`skopeo copy -q oci:${IMAGE} docker-archive:${dockerArchive}:test/img:t`);
}

async function waitFor(url: string, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${log()}`);
    const ok = await fetch(url).then(
      (r) => r.status === 200 || r.status === 401,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`docker-registry did not answer at ${url}: ${log()}`);
}

/** Debian's docker-registry with its own config in the test's directory, on a loopback port. */
async function startRegistry(name: string, extra = ''): Promise<{ addr: string; store: string }> {
  const dir = fresh(name);
  const port = await freePort();
  const store = path.join(dir, 'store');
  fs.writeFileSync(
    path.join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${store}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${extra}`,
  );
  let out = '';
  const child = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  children.push(child);
  await waitFor(`http://127.0.0.1:${port}/v2/`, child, () => out);
  return { addr: `127.0.0.1:${port}`, store };
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** A Docker token service: Basic credentials in, a JWT signed with the key the registry trusts out. */
async function startTokenServer(keyPem: string, certPem: string): Promise<string> {
  const certDer = crypto.createPublicKey(certPem) && Buffer.from(certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const server = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const auth = req.headers.authorization ?? '';
    if (auth !== `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
      return;
    }
    const access = url.searchParams.getAll('scope').map((s) => {
      const [type, name, actions] = s.split(':');
      return { type, name, actions: actions.split(',') };
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', x5c: [certDer.toString('base64')] };
    const claims = { iss: 'pxeherd-test-issuer', sub: USER, aud: url.searchParams.get('service'), exp: now + 600, nbf: now - 60, iat: now, jti: crypto.randomUUID(), access };
    const signing = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = crypto.sign('sha256', Buffer.from(signing), keyPem);
    const token = `${signing}.${b64url(sig)}`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 600 }));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/token`;
}

before(async () => {
  if (skip) return;
  buildImage();
  const plain = await startRegistry('registry');
  registry = plain.addr;
  registryStore = plain.store;
  sh(`skopeo copy -q --dest-tls-verify=false oci:${IMAGE} docker://${registry}/test/img:t`);

  const keys = fresh('token-keys');
  sh('openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -subj /CN=pxeherd-token -days 2 2>/dev/null', keys);
  const realm = await startTokenServer(fs.readFileSync(path.join(keys, 'key.pem'), 'utf8'), fs.readFileSync(path.join(keys, 'cert.pem'), 'utf8'));
  const withToken = await startRegistry(
    'token-registry',
    `auth:\n  token:\n    realm: ${realm}\n    service: pxeherd-test-registry\n    issuer: pxeherd-test-issuer\n    rootcertbundle: ${path.join(keys, 'cert.pem')}\n`,
  );
  tokenRegistry = withToken.addr;
  await shAsync(`skopeo copy -q --dest-tls-verify=false --dest-creds '${USER}:${PASSWORD}' oci:${IMAGE} docker://${tokenRegistry}/test/img:t`);
});

function assertSameAsReference(dest: string, label: string): void {
  const got = describeTree(dest);
  assert.deepEqual(diffTrees(reference, got, (rel) => rel === '.'), [], label);
  // The layers did what they say (so the reference is not trivially empty either).
  assert.ok(!got.has('etc/gone'), 'layer 2 whiteout applied');
  assert.deepEqual([...got.keys()].filter((k) => k.startsWith('opq/')).sort(), ['opq/upper'], 'opaque directory keeps only its own layer');
  assert.ok(!got.has('usr/bin/big-hl2'), 'whiteout of one hard-linked name');
  assert.equal(got.get('usr/lib/big')!.linkGroup, 'usr/lib/big', 'hard links kept');
  assert.equal(got.get('usr/lib/big-hl')!.linkGroup, 'usr/lib/big');
  assert.equal(got.get('usr/bin/su')!.mode, '4755');
  assert.equal(got.get('usr/bin/wall')!.mode, '2755');
  assert.equal(got.get('usr/bin/ping')!.xattrs?.['security.capability']?.startsWith('0x'), true, 'file capability kept');
  assert.equal(got.get('home/alice/notes')!.owner, '1000:1000');
  assert.equal(got.get('srv/owned/file')!.owner, '33:33');
  assert.equal(got.get('usr/sbin/su-abs')!.link, '/usr/bin/su');
  assert.equal(got.get('usr/sbin/su-rel')!.link, '../bin/su');
  assert.equal(got.get('var/log')!.mode, '1777');
}

const sources = (): [string, string, Record<string, string>][] => [
  ['oci-archive', `oci-archive:${ociArchive}:t`, {}],
  ['docker-archive', `docker-archive:${dockerArchive}`, {}],
  ['registry', `docker://${registry}/test/img:t`, {}],
  ['registry with token auth', `docker://${tokenRegistry}/test/img:t`, { PXEHERD_REGISTRY_USER: USER, PXEHERD_REGISTRY_PASSWORD: PASSWORD }],
];

for (const i of [0, 1, 2, 3]) {
  test(`importOci from ${['an oci-archive', 'a docker-archive', 'a registry', 'a registry with token auth'][i]} gives the tree umoci unpacks, file by file (whiteouts, opaque dir, hard links, symlinks, setuid, capability, owners)`, { skip }, async () => {
    const [label, ref, env] = sources()[i];
    const dest = fresh('rootfs');
    const cacheDir = fresh('cache');
    const lines: string[] = [];
    const r = await importOci(ref, dest, { cacheDir, insecure: true, progress: (m) => lines.push(m), env: { ...env, HOME: tmp } });
    assertSameAsReference(dest, label);
    assert.match(r.digest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(r.source, `oci:${ref}`);
    assert.ok(lines.some((l) => /applied layer 3\/3/.test(l)), `progress lines: ${lines.join(' | ')}`);
    if (label !== 'docker-archive') {
      const manifestDigest = JSON.parse(sh(`skopeo inspect --raw oci:${IMAGE} | sha256sum | sed 's/ .*//;s/^/"sha256:/;s/$/"/'`));
      assert.equal(r.digest, manifestDigest, 'the digest is the manifest\'s');
    }
    // A second import takes every blob from the cache, still verified.
    const again = fresh('rootfs');
    const lines2: string[] = [];
    await importOci(ref, again, { cacheDir, insecure: true, progress: (m) => lines2.push(m), env: { ...env, HOME: tmp } });
    assertSameAsReference(again, `${label} from the cache`);
    if (label.startsWith('registry')) assert.equal(lines2.filter((l) => /cached/.test(l)).length, 4, 'config and 3 layers from the cache');
  });
}

test('a registry with token auth: no credentials and wrong credentials are clear errors that leave nothing', { skip }, async () => {
  for (const env of [{}, { PXEHERD_REGISTRY_USER: USER, PXEHERD_REGISTRY_PASSWORD: 'wrong' }]) {
    const dest = fresh('rootfs');
    const cacheDir = fresh('cache');
    await assert.rejects(importOci(`docker://${tokenRegistry}/test/img:t`, dest, { cacheDir, insecure: true, env: { ...env, HOME: tmp } }), (e) => {
      assert.ok(e instanceof ImageError);
      assert.match(e.message, env.PXEHERD_REGISTRY_USER ? /refused the credentials of "alice"/ : /needs credentials: set PXEHERD_REGISTRY_USER/);
      return true;
    });
    assert.deepEqual(fs.readdirSync(dest), []);
  }
});

test('credentials come from a skopeo/podman auth file (REGISTRY_AUTH_FILE)', { skip }, async () => {
  const authFile = path.join(fresh('auth'), 'auth.json');
  fs.writeFileSync(authFile, JSON.stringify({ auths: { [tokenRegistry]: { auth: Buffer.from(`${USER}:${PASSWORD}`).toString('base64') } } }));
  const dest = fresh('rootfs');
  await importOci(`docker://${tokenRegistry}/test/img:t`, dest, { cacheDir: fresh('cache'), insecure: true, env: { REGISTRY_AUTH_FILE: authFile, HOME: tmp } });
  assertSameAsReference(dest, 'auth file');
});

function layerDigests(): string[] {
  const m = JSON.parse(sh(`skopeo inspect --raw oci:${IMAGE}`)) as { layers: { digest: string }[] };
  return m.layers.map((l) => l.digest);
}

function flipByte(file: string, at: number): void {
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, at);
  b[0] ^= 0xff;
  fs.writeSync(fd, b, 0, 1, at);
  fs.closeSync(fd);
}

async function assertRefusedLeavingNothing(ref: string, entryRe: RegExp, msgRe: RegExp): Promise<void> {
  const dest = fresh('rootfs');
  const cacheDir = fresh('cache');
  await assert.rejects(importOci(ref, dest, { cacheDir, insecure: true, env: { HOME: tmp } }), (e) => {
    assert.ok(e instanceof ImageError, `ImageError, got ${e}`);
    assert.match(e.message, msgRe);
    assert.match(e.entry ?? '', entryRe);
    return true;
  });
  assert.deepEqual(fs.readdirSync(dest), [], 'no layer applied');
  const cached = fs.existsSync(path.join(cacheDir, 'blobs/sha256')) ? fs.readdirSync(path.join(cacheDir, 'blobs/sha256')) : [];
  assert.ok(cached.every((f) => !f.startsWith('.partial')), `no partial blob left: ${cached}`);
  assert.deepEqual(fs.readdirSync(cacheDir).filter((f) => f.startsWith('staging')), [], 'no staging left');
}

test('a layer altered in the registry\'s storage is refused, naming the layer, before any layer is applied, and is not cached', { skip }, async () => {
  const layer2 = layerDigests()[1];
  const data = path.join(registryStore, 'docker/registry/v2/blobs/sha256', layer2.slice(7, 9), layer2.slice(7), 'data');
  flipByte(data, Math.floor(fs.statSync(data).size / 2));
  try {
    await assertRefusedLeavingNothing(`docker://${registry}/test/img:t`, new RegExp(`layer 2/3 \\(${layer2}\\)`), new RegExp(`layer 2/3 \\(${layer2}\\).*content has digest sha256:[0-9a-f]{64}, not ${layer2}`));
  } finally {
    flipByte(data, Math.floor(fs.statSync(data).size / 2));
  }
});

test('a layer altered inside an oci-archive, and inside a docker-archive, is refused naming the layer', { skip }, async () => {
  const layer3 = layerDigests()[2];
  const dir = fresh('tamper-oci');
  sh(`tar -xf ${ociArchive} -C ${dir}`);
  const blob = path.join(dir, 'blobs/sha256', layer3.slice(7));
  flipByte(blob, Math.floor(fs.statSync(blob).size / 2));
  const bad = path.join(dir, '..', 'bad.oci.tar');
  sh(`tar -cf ${bad} -C ${dir} .`);
  await assertRefusedLeavingNothing(`oci-archive:${bad}:t`, new RegExp(`layer 3/3`), new RegExp(`layer 3/3 \\(${layer3}\\).*not ${layer3}`));

  const ddir = fresh('tamper-docker');
  sh(`tar -xf ${dockerArchive} -C ${ddir}`);
  const manifest = JSON.parse(fs.readFileSync(path.join(ddir, 'manifest.json'), 'utf8')) as { Layers: string[] }[];
  const layerFile = path.join(ddir, manifest[0].Layers[0]);
  flipByte(layerFile, 700); // inside the first member's data
  const dbad = path.join(ddir, '..', 'bad.docker.tar');
  sh(`tar -cf ${dbad} -C ${ddir} .`);
  await assertRefusedLeavingNothing(`docker-archive:${dbad}`, new RegExp(manifest[0].Layers[0].replace(/\./g, '\\.')), /layer 1\/3 .*not sha256:[0-9a-f]{64} as the image config says/);
});

test('a hostile layer in a registry image (a symlink, then a file written through it) is refused naming the entry, leaving nothing outside', { skip }, async () => {
  // Built with umoci from a verbatim layer, pushed with skopeo: the digests are right, the content is hostile.
  const victim = fresh('victim');
  const evil = path.join(tmp, 'evil-layout');
  sh(`umoci init --layout ${evil} && umoci new --image ${evil}:t`);
  const l = fresh('evil-layer');
  fs.symlinkSync(victim, path.join(l, 'etc'));
  fs.writeFileSync(path.join(l, 'pwned'), 'x');
  sh(`tar -cf ${l}.tar -C ${l} etc && tar -rf ${l}.tar -C ${l} --transform 's,^pwned$,etc/pwned,' pwned`);
  sh(`umoci raw add-layer --image ${evil}:t ${l}.tar`);
  sh(`skopeo copy -q --dest-tls-verify=false oci:${evil}:t docker://${registry}/test/evil:t`);
  const dest = fresh('rootfs');
  await assert.rejects(importOci(`docker://${registry}/test/evil:t`, dest, { cacheDir: fresh('cache'), insecure: true, env: { HOME: tmp } }), (e) => {
    assert.ok(e instanceof ImageError);
    assert.equal(e.entry, 'etc/pwned');
    assert.match(e.message, /"etc\/pwned" would be written through "etc", a symlink earlier in the archive/);
    return true;
  });
  assert.deepEqual(fs.readdirSync(victim), []);
  assert.deepEqual(fs.readdirSync(dest), []);
});

test('a tag the registry does not have, and an unreachable registry, are clear errors', { skip }, async () => {
  await assert.rejects(importOci(`docker://${registry}/test/img:nope`, fresh('rootfs'), { cacheDir: fresh('cache'), insecure: true, env: { HOME: tmp } }), /not on the registry \(HTTP 404\)/);
  const port = await freePort();
  await assert.rejects(importOci(`docker://127.0.0.1:${port}/test/img:t`, fresh('rootfs'), { cacheDir: fresh('cache'), insecure: true, env: { HOME: tmp } }), /cannot reach registry 127\.0\.0\.1:\d+.*ECONNREFUSED/);
  await assert.rejects(importOci(`oci-archive:${ociArchive}:other`, fresh('rootfs'), { cacheDir: fresh('cache') }), /has no image tagged "other" \(it has: t\)/);
});

test('pxeherd vnfs import NAME docker-archive:FILE makes a revision whose tree is the image, its source naming the archive and digest', { skip }, async () => {
  const { makeStateDir, pxeherd } = await import('../helpers/cli.js');
  const sd = makeStateDir();
  try {
    const r = pxeherd(['vnfs', 'import', 'ocinode', `docker-archive:${dockerArchive}`, '--json'], { config: sd.config, env: { ...process.env, HOME: tmp } });
    assert.equal(r.code, 0, r.stderr);
    const revs = pxeherd(['vnfs', 'revisions', 'ocinode', '--json'], { config: sd.config });
    assert.equal(revs.code, 0, revs.stderr);
    const list = JSON.parse(revs.stdout) as { revisions: { rev: number; source: string }[] };
    assert.equal(list.revisions.length, 1);
    assert.match(list.revisions[0]!.source, new RegExp(`^oci:docker-archive:.*img\\.docker\\.tar@sha256:[0-9a-f]{64}$`));
    assertSameAsReference(path.join(sd.statedir, 'images', 'ocinode', String(list.revisions[0]!.rev), 'tree'), 'vnfs import docker-archive');
    // A hostile reference is refused as bad input (exit 2) and makes no revision.
    const bad = pxeherd(['vnfs', 'import', 'ocinode', 'docker-archive:/nonexistent.tar', '--json'], { config: sd.config });
    assert.equal(bad.code, 2, bad.stderr);
    assert.equal((JSON.parse(pxeherd(['vnfs', 'revisions', 'ocinode', '--json'], { config: sd.config }).stdout) as { revisions: unknown[] }).revisions.length, 1);
  } finally {
    sd.cleanup();
  }
});
