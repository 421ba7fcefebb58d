/** What a revision is: written as <statedir>/vnfs/<name>/r<rev>/manifest.json and kept in the database. */
export interface ArtifactInfo {
  sha256: string;
  size: number;
}

export type ArtifactName = 'vmlinuz' | 'initrd.img' | 'rootfs.squashfs';
export const ARTIFACTS: readonly ArtifactName[] = ['vmlinuz', 'initrd.img', 'rootfs.squashfs'];

export interface ImageManifest {
  vnfs: string;
  rev: number;
  parent: number | null;
  arch: string;
  /** debian:<suite> | dir:<path> | tar:<file> | oci:<ref> | exec:<cmd> | capture:<node> */
  source: string;
  comment: string;
  createdAt: number;
  /** The kernel the revision boots ('' when the image has none: it cannot boot until one is installed). */
  kernel: string;
  kernelVersions: string[];
  artifacts: Partial<Record<ArtifactName, ArtifactInfo>>;
  tree: { files: number; bytes: number };
  /**
   * How each artifact was made (input digests): a later revision whose inputs are the same
   * links the artifact instead of packing it again. Not part of what nodes verify.
   */
  inputs?: Partial<Record<ArtifactName, string>>;
  /** Modules the stage one carries, in load order. */
  modules?: string[];
}

/** Pure: the manifest as nodes download it (stable key order, trailing newline). */
export function manifestJson(m: ImageManifest): string {
  const ordered: ImageManifest = {
    vnfs: m.vnfs,
    rev: m.rev,
    parent: m.parent,
    arch: m.arch,
    source: m.source,
    comment: m.comment,
    createdAt: m.createdAt,
    kernel: m.kernel,
    kernelVersions: m.kernelVersions,
    artifacts: Object.fromEntries(ARTIFACTS.filter((a) => m.artifacts[a]).map((a) => [a, { sha256: m.artifacts[a]!.sha256, size: m.artifacts[a]!.size }])),
    tree: { files: m.tree.files, bytes: m.tree.bytes },
    ...(m.modules ? { modules: m.modules } : {}),
    ...(m.inputs ? { inputs: m.inputs } : {}),
  };
  return JSON.stringify(ordered, null, 2) + '\n';
}

/** Parse a stored manifest; throws with the reason when it is not one. */
export function parseManifest(text: string): ImageManifest {
  const m = JSON.parse(text) as ImageManifest;
  if (typeof m !== 'object' || m === null || typeof m.vnfs !== 'string' || typeof m.rev !== 'number' || typeof m.artifacts !== 'object') {
    throw new Error('not an image manifest (needs vnfs, rev, artifacts)');
  }
  return m;
}
