import crypto from 'node:crypto';
import fs from 'node:fs';

/**
 * Replace `file` with `data`, readable by its owner only (0600), atomically: written under a
 * private temporary name, then renamed, so the secret is never readable by others, not even for
 * a moment and whatever the umask, and a crash leaves the old file or the new one, never half.
 */
export function writeSecretFile(file: string, data: string | Buffer): void {
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    fs.fchmodSync(fd, 0o600);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}
