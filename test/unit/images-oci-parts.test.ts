import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseImageRef, formatImageRef } from '../../src/images/oci/reference.js';
import { parseManifestOrIndex, pickPlatform, MEDIA } from '../../src/images/oci/manifest.js';
import { parseChallenge, findCredentials } from '../../src/images/oci/auth.js';
import { ImageError } from '../../src/images/errors.js';
import { TarReader, type TarEvent } from '../../src/images/tarformat.js';
import { normalizeMember, resolveRelativeLink, compressionOf } from '../../src/images/tar.js';
import { ustar, ustarHeader } from '../helpers/ustar.js';

const D = (c: string) => `sha256:${c.repeat(64)}`;

test('image references: archives with and without a tag, registries with host, port, nested repo, tag or digest, Docker Hub short names', () => {
  assert.deepEqual(parseImageRef('oci-archive:/x/img.tar:v1'), { transport: 'oci-archive', file: '/x/img.tar', tag: 'v1' });
  assert.deepEqual(parseImageRef('oci-archive:img.tar', () => false, '/work'), { transport: 'oci-archive', file: '/work/img.tar', tag: undefined });
  // A file whose name has a colon is a file when it exists.
  assert.deepEqual(parseImageRef('oci-archive:/x/a:b.tar', (f) => f === '/x/a:b.tar'), { transport: 'oci-archive', file: '/x/a:b.tar', tag: undefined });
  assert.deepEqual(parseImageRef('docker-archive:/x/d.tar'), { transport: 'docker-archive', file: '/x/d.tar', name: undefined });
  assert.deepEqual(parseImageRef('docker-archive:/x/d.tar:test/img:t'), { transport: 'docker-archive', file: '/x/d.tar', name: 'test/img:t' });
  assert.deepEqual(parseImageRef('docker://10.0.0.1:5000/site/rocky:9'), { transport: 'docker', host: '10.0.0.1:5000', repo: 'site/rocky', tag: '9', digest: undefined });
  assert.deepEqual(parseImageRef('docker://localhost/a/b/c'), { transport: 'docker', host: 'localhost', repo: 'a/b/c', tag: 'latest', digest: undefined });
  assert.deepEqual(parseImageRef('docker://debian:bookworm'), { transport: 'docker', host: 'registry-1.docker.io', repo: 'library/debian', tag: 'bookworm', digest: undefined });
  assert.deepEqual(parseImageRef(`docker://reg.example/x@${D('a')}`), { transport: 'docker', host: 'reg.example', repo: 'x', tag: undefined, digest: D('a') });
  assert.equal(formatImageRef(parseImageRef('docker://debian')), 'docker://registry-1.docker.io/library/debian:latest');
});

test('bad image references say what is wrong and what the forms are', () => {
  for (const [ref, re] of [
    ['img.tar', /no transport/],
    ['podman:x', /unknown transport "podman"/],
    ['docker:h/r', /start with docker:\/\//],
    ['docker://h.example/Upper:t', /"Upper" is not a valid repository name/],
    ['docker://h.example/r@sha256:abc', /not a sha256 digest/],
    ['docker://h.example/r:bad tag', /not a tag/],
    ['oci-archive:', /no file/],
  ] as const) {
    assert.throws(() => parseImageRef(ref), (e) => e instanceof ImageError && re.test(e.message) && /oci-archive:FILE\[:TAG\]/.test(e.message), ref);
  }
});

const index = (platforms: [string, string, string?][]) =>
  Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociIndex,
      manifests: platforms.map(([os, architecture, variant], i) => ({ mediaType: MEDIA.ociManifest, digest: D(String(i)), size: 500, platform: { os, architecture, variant } })),
    }),
  );

test('an index yields the linux manifest of the wanted architecture (amd64 by default, x86_64/aarch64 spellings too), or an error listing what it has', () => {
  const p = parseManifestOrIndex(index([['linux', 'arm', 'v7'], ['linux', 'arm64', 'v8'], ['linux', 'amd64'], ['windows', 'amd64']]), 'idx');
  assert.equal(p.kind, 'index');
  if (p.kind !== 'index') return;
  assert.equal(pickPlatform(p.index, 'amd64', 'idx').digest, D('2'));
  assert.equal(pickPlatform(p.index, 'x86_64', 'idx').digest, D('2'));
  assert.equal(pickPlatform(p.index, 'aarch64', 'idx').digest, D('1'));
  assert.throws(() => pickPlatform(p.index, 'riscv64', 'idx'), /no linux\/riscv64 image \(it has linux\/arm\/v7, linux\/arm64\/v8, linux\/amd64, windows\/amd64\)/);
});

test('manifests: Docker v2 schema 2 and OCI accepted, schema 1 and Windows foreign layers refused with a reason, malformed JSON named', () => {
  const m = { schemaVersion: 2, mediaType: MEDIA.dockerManifest, config: { mediaType: MEDIA.dockerConfig, digest: D('c'), size: 10 }, layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: D('1'), size: 5 }] };
  const p = parseManifestOrIndex(Buffer.from(JSON.stringify(m)), 'm');
  assert.equal(p.kind === 'manifest' && p.manifest.layers.length, 1);
  assert.throws(() => parseManifestOrIndex(Buffer.from('{"schemaVersion":1,"fsLayers":[]}'), 'm'), /schema 1 manifest, which is obsolete/);
  const win = { ...m, layers: [{ mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', digest: D('1'), size: 5 }] };
  assert.throws(() => parseManifestOrIndex(Buffer.from(JSON.stringify(win)), 'm'), /non-distributable layer/);
  assert.throws(() => parseManifestOrIndex(Buffer.from('{'), 'the manifest of X'), /the manifest of X is not JSON/);
  assert.throws(() => parseManifestOrIndex(Buffer.from(JSON.stringify({ ...m, config: { digest: 'md5:x', size: 1 } })), 'm'), /m is malformed: config.digest/);
});

test('WWW-Authenticate challenges and credentials from the environment or an auth file', () => {
  assert.deepEqual(parseChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'), {
    scheme: 'bearer',
    params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull' },
  });
  assert.deepEqual(parseChallenge('Basic realm="basic-realm"'), { scheme: 'basic', params: { realm: 'basic-realm' } });
  const file = JSON.stringify({ auths: { 'reg:5000': { auth: Buffer.from('bob:p:w').toString('base64') } } });
  const read = (f: string) => (f === '/a.json' ? file : undefined);
  assert.deepEqual(findCredentials('reg:5000', { REGISTRY_AUTH_FILE: '/a.json', HOME: '/none' }, read), { username: 'bob', password: 'p:w' });
  assert.equal(findCredentials('other', { REGISTRY_AUTH_FILE: '/a.json', HOME: '/none' }, read), undefined);
  assert.deepEqual(findCredentials('reg:5000', { PXEHERD_REGISTRY_USER: 'amy', PXEHERD_REGISTRY_PASSWORD: 's', HOME: '/none' }, read), { username: 'amy', password: 's' });
  assert.throws(() => findCredentials('reg', { REGISTRY_AUTH_FILE: '/bad.json', HOME: '/none' }, () => '{'), /credentials file \/bad.json is not JSON/);
});

function events(buf: Buffer, chunk = 7): TarEvent[] {
  const r = new TarReader();
  const out: TarEvent[] = [];
  for (let i = 0; i < buf.length; i += chunk) out.push(...r.push(buf.subarray(i, i + chunk)));
  r.end();
  return out;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len++;
  return `${len}${body}`;
}

test('the tar reader: pax path/size/xattr overrides and GNU base-256 sizes, read across tiny chunks', () => {
  const longName = 'd/'.repeat(80) + 'file';
  const pax = Buffer.from(paxRecord('path', longName) + paxRecord('SCHILY.xattr.security.capability', 'CAP'));
  const data = Buffer.from('hello');
  const h = ustarHeader({ name: 'short' }, data.length);
  const b256 = ustarHeader({ name: 'big' }, 0);
  b256.fill(0, 124, 136);
  b256[124] = 0x80;
  b256[135] = 3; // size 3 in base-256
  b256.fill(0x20, 148, 156);
  let sum = 0;
  for (const v of b256) sum += v;
  b256.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  const buf = Buffer.concat([
    ustarHeader({ name: 'PaxHeaders/x', type: 'x' }, pax.length),
    pax,
    Buffer.alloc(512 - (pax.length % 512)),
    h,
    data,
    Buffer.alloc(512 - data.length),
    b256,
    Buffer.from('abc'),
    Buffer.alloc(509),
    Buffer.alloc(1024),
  ]);
  const evs = events(buf);
  const entries = evs.filter((e) => e.type === 'entry').map((e) => e.header);
  assert.equal(entries[0].name, longName);
  assert.equal(entries[0].xattrs.get('security.capability')!.toString(), 'CAP');
  assert.equal(entries[1].name, 'big');
  assert.equal(entries[1].size, 3);
  const body = Buffer.concat(evs.filter((e) => e.type === 'data' && e.header.name === longName).map((e) => (e as { chunk: Buffer }).chunk));
  assert.equal(body.toString(), 'hello');
});

test('the tar reader refuses truncation, a bad checksum, sparse and unknown entry types, naming the entry', () => {
  const ok = ustar([{ name: 'a', data: 'x'.repeat(1000) }]);
  assert.throws(() => events(ok.subarray(0, 700)), (e) => e instanceof ImageError && e.entry === 'a' && /truncated: it ends inside "a"/.test(e.message));
  const bad = Buffer.from(ok);
  bad[0] ^= 1;
  assert.throws(() => events(bad), /bad tar header checksum at byte 0/);
  assert.throws(() => events(ustar([{ name: 'sp', type: 'S' }])), /"sp" is a GNU sparse file/);
  assert.throws(() => events(ustar([{ name: 'odd', type: 'Z' }])), /"odd" is of unknown tar type "Z"/);
});

test('member names: ./ and // folded, .. and absolute refused; relative symlinks resolved against their directory', () => {
  assert.equal(normalizeMember('./usr//bin/./x/'), 'usr/bin/x');
  assert.equal(normalizeMember('./'), '');
  assert.throws(() => normalizeMember('a/../../b'), /"a\/..\/..\/b" has a ".." component/);
  assert.throws(() => normalizeMember('/etc/passwd'), /absolute path/);
  assert.equal(resolveRelativeLink('usr/sbin/x', '../bin/su'), 'usr/bin/su');
  assert.equal(resolveRelativeLink('usr/sbin/x', '../../etc'), 'etc');
  assert.equal(resolveRelativeLink('usr/sbin/x', '../../../etc'), undefined);
  assert.equal(compressionOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0])), 'zstd');
  assert.equal(compressionOf(Buffer.from('ustar!')), 'none');
});
