import os from 'node:os';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import type { EventSink } from '../nodes/types.js';
import { RevisionArtifacts } from './artifacts.js';
import type { VnfsFileHash, VnfsFileRecord } from '../store/groups.js';

/** The store's side of RevisionArtifacts: the manifest text of a revision, the recorded hashes of a kernel+initrd VNFS's files. */
export interface RevisionManifests {
  vnfs: {
    revision(name: string, rev: number): { manifest: string } | undefined;
    file(name: string, file: string): VnfsFileRecord | undefined;
    recordFileHash(name: string, file: string, hash: VnfsFileHash): boolean;
  };
}

/** RevisionArtifacts as `serve` and `vnfs sync` build them from the configuration. */
export function revisionArtifactsFor(config: Config, store: RevisionManifests, events: EventSink, log?: (level: 'info' | 'warn', msg: string) => void): RevisionArtifacts {
  return new RevisionArtifacts({
    vnfsRoot: path.join(config.statedir, 'vnfs'),
    manifestOf: (name, rev) => store.vnfs.revision(name, rev)?.manifest,
    vnfsFileOf: (name, file) => store.vnfs.file(name, file),
    recordVnfsFile: (name, file, hash) => store.vnfs.recordFileHash(name, file, hash),
    origins: config.images?.origins ?? [],
    serverId: config.server_id || os.hostname(),
    events,
    log,
    attempts: config.images?.fetch_attempts,
    idleTimeoutMs: (config.images?.fetch_idle_timeout_seconds ?? 30) * 1000,
  });
}
