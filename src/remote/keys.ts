import fs from 'node:fs';
import path from 'node:path';
import type ssh2 from 'ssh2';
import { ssh2lib } from './ssh2lib.js';

export interface KeyPair {
  /** OpenSSH private key text (never printed, never put in an event). */
  privateKey: string;
  /** One line "ssh-ed25519 AAAA... pxeherd@<host>", what nodescripts install on nodes. */
  publicKey: string;
  privatePath: string;
  publicPath: string;
}

export function keyPaths(statedir: string): { dir: string; privatePath: string; publicPath: string } {
  const dir = path.join(statedir, 'ssh');
  return { dir, privatePath: path.join(dir, 'id_ed25519'), publicPath: path.join(dir, 'id_ed25519.pub') };
}

/**
 * The key pxeherd logs in to nodes (and BMCs, switches) with: <statedir>/ssh/id_ed25519,
 * generated on first use. Two commands starting at once must end up with the same key, so
 * the private key is written under a temporary name and hard-linked into place (link fails
 * if another process won), never overwritten.
 */
export function ensureKey(statedir: string, comment = 'pxeherd'): KeyPair {
  const { dir, privatePath, publicPath } = keyPaths(statedir);
  if (!fs.existsSync(privatePath)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const kp = generate(comment);
    const tmp = `${privatePath}.${process.pid}.${Date.now()}.tmp`;
    fs.writeFileSync(tmp, kp.private, { mode: 0o600, flag: 'wx' });
    try {
      fs.linkSync(tmp, privatePath);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  const st = fs.statSync(privatePath);
  // A key readable by others is a key others can log in to every node with.
  if ((st.mode & 0o077) !== 0) fs.chmodSync(privatePath, 0o600);
  const privateKey = fs.readFileSync(privatePath, 'utf8');
  const publicKey = publicKeyOf(privateKey, comment);
  let onDisk = '';
  try {
    onDisk = fs.readFileSync(publicPath, 'utf8');
  } catch {
    /* written below */
  }
  if (onDisk.trim() !== publicKey) {
    const tmp = `${publicPath}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, publicKey + '\n', { mode: 0o644 });
    fs.renameSync(tmp, publicPath);
  }
  return { privateKey, publicKey, privatePath, publicPath };
}

/**
 * ssh2 1.17 drops a leading zero byte of the ed25519 public key (about one key in 256),
 * writing a key that neither it nor OpenSSH can read back; such keys are thrown away.
 */
function generate(comment: string): { private: string; public: string } {
  for (let i = 0; i < 16; i++) {
    const kp = ssh2lib().utils.generateKeyPairSync('ed25519', { comment });
    const parsed = ssh2lib().utils.parseKey(kp.private);
    if (!(parsed instanceof Error) && !Array.isArray(parsed) && parsed.getPublicSSH().length === 51) return kp;
  }
  throw new Error('could not generate a valid ed25519 key');
}

/** "ssh-ed25519 AAAA... comment" for an OpenSSH private key. */
export function publicKeyOf(privateKey: string | Buffer, comment = 'pxeherd'): string {
  const parsed = ssh2lib().utils.parseKey(privateKey);
  if (parsed instanceof Error) throw new Error(`cannot read the pxeherd SSH key: ${parsed.message}`);
  const k = Array.isArray(parsed) ? parsed[0]! : parsed;
  return `${k.type} ${k.getPublicSSH().toString('base64')} ${comment}`;
}
