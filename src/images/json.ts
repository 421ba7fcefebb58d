import type { RevisionInfo } from './service.js';

/** A revision in the stable JSON of `vnfs revisions --json`, `vnfs show --json` and GET /api/v1/vnfs/NAME/revisions. */
export function revisionJson(r: RevisionInfo, usage?: { addedBytes: number; ownBytes: number; treeBytes: number; artifactBytes: number }) {
  return {
    rev: r.rev,
    parent: r.parent,
    current: r.current,
    source: r.source,
    comment: r.comment,
    createdAt: new Date(r.createdAt).toISOString(),
    kernel: r.manifest.kernel,
    nodes: r.nodes,
    artifacts: r.manifest.artifacts,
    tree: r.manifest.tree,
    ...(usage ? { disk: usage } : {}),
  };
}

