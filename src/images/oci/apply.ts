/**
 * Apply verified layers, in order, onto an empty root filesystem: each one through
 * extractTar with OCI whiteouts, and its uncompressed sha256 checked against the config's
 * diff_id (a mismatch fails the import; the caller discards dest).
 */
import { ImageError } from '../errors.js';
import { extractTar } from '../tar.js';
import { formatBytes, type Layer } from './resolve.js';

export async function applyLayers(layers: Layer[], dest: string, source: string, progress: (msg: string) => void): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const layer of layers) {
    const started = Date.now();
    let last = started;
    const stats = await extractTar(layer.path, dest, {
      whiteouts: true,
      onProgress: (n) => {
        if (Date.now() - last >= 2000) {
          last = Date.now();
          progress(`applying ${layer.what}: ${formatBytes(n)}`);
        }
      },
    });
    if (layer.diffId && stats.diffId !== layer.diffId) {
      throw new ImageError(`${layer.what} of ${source}: its uncompressed content has digest ${stats.diffId}, not ${layer.diffId} as the image config says: the image is corrupt`, layer.digest);
    }
    files += stats.files;
    bytes += stats.bytes;
    const wh = stats.whiteouts + stats.opaqueDirs ? `, ${stats.whiteouts} whiteouts, ${stats.opaqueDirs} opaque directories` : '';
    progress(`applied ${layer.what}: ${stats.entries} entries, ${formatBytes(stats.bytes)}${wh} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  }
  return { files, bytes };
}
