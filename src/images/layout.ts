import path from 'node:path';
import { validateName } from '../nodes/names.js';

/**
 * Where an image lives (CONTRACT.md): the trees under <statedir>/images/<name>/<rev>/tree/
 * (never served, never modified after commit) and what nodes download under
 * <statedir>/vnfs/<name>/r<rev>/. Names are validated here, so no path leaves the state directory.
 */
export class ImageLayout {
  constructor(readonly statedir: string) {}

  imageDir(name: string): string {
    return path.join(this.statedir, 'images', validateName('vnfs', name));
  }
  revDir(name: string, rev: number): string {
    return path.join(this.imageDir(name), String(rev));
  }
  treeDir(name: string, rev: number): string {
    return path.join(this.revDir(name, rev), 'tree');
  }
  /** getfattr dump of the tree, kept beside it: the next commit compares xattrs without reading the tree again. */
  xattrsFile(name: string, rev: number): string {
    return path.join(this.revDir(name, rev), 'xattrs');
  }
  vnfsDir(name: string): string {
    return path.join(this.statedir, 'vnfs', validateName('vnfs', name));
  }
  artifactsDir(name: string, rev: number): string {
    return path.join(this.vnfsDir(name), `r${rev}`);
  }
  manifestFile(name: string, rev: number): string {
    return path.join(this.artifactsDir(name, rev), 'manifest.json');
  }
  /** Work directories of an operation in progress (same file system as the trees: renames and hard links). */
  stagingDir(name: string, tag: string): string {
    return path.join(this.imageDir(name), `.staging-${tag}`);
  }
  lockDir(name: string): string {
    return path.join(this.statedir, 'images', `.${validateName('vnfs', name)}.lock`);
  }
  /** Downloaded packages (busybox-static for the stage one) between packs. */
  cacheDir(): string {
    return path.join(this.statedir, 'cache');
  }
}
