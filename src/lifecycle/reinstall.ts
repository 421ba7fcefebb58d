import type { BootEvent, Node } from '../nodes/types.js';
import type { PowerOutcome } from '../power/types.js';
import { mapLimit } from '../remote/fanout.js';
import { fmtSeconds } from '../remote/ssh.js';
import { describeEvent, followBoot, type Stage } from './stages.js';

/** The edges a reinstall touches; the CLI builds it from the store, tests can fake it. */
export interface ReinstallBackend {
  /** Boot mode `once` for all of them, in one transaction. */
  setBootOnce(nodes: Node[]): void;
  /** The BMC's next boot: the network, once (ipmi bootdev pxe, redfish boot override). */
  setBootPxe(node: Node): Promise<PowerOutcome>;
  powerCycle(node: Node): Promise<PowerOutcome>;
  /** The node's events since `since` (ms), oldest first. */
  eventsSince(node: Node, since: number): BootEvent[];
  /** Resolves when `true` ran with exit 0 over SSH with the pxeherd key; rejects with the reason. */
  probeSsh(node: Node, timeoutMs: number): Promise<void>;
  record(ev: BootEvent): void;
  now(): number;
  sleep(ms: number): Promise<void>;
}

export type ReinstallResult = 'ready' | 'failed' | 'timeout' | 'started';

export interface NodeOutcome {
  node: string;
  result: ReinstallResult;
  /** The stage the node was in when it ended (ready: ssh). */
  stage: Stage;
  /** One line: what failed, what it waited for, or the power result. */
  message: string;
  lastEvent: string | null;
  seconds: number;
}

export interface ReinstallOptions {
  wait: boolean;
  timeoutMs: number;
  parallel: number;
  pollMs?: number;
  /** Minimum time between two SSH probes of one node. */
  sshEveryMs?: number;
  onProgress?: (line: string) => void;
  /** With no progress line for this long, one line lists who is still waiting where. */
  heartbeatMs?: number;
}

interface Tracking {
  node: Node;
  stageKey: string;
  deadline: number;
  done?: NodeOutcome;
  probing: boolean;
  nextProbe: number;
  sshError?: string;
}

/**
 * `node reinstall`: boot mode once, the BMC's next boot set to PXE, power cycle, and (with wait) follow each node through
 * DHCP, boot files, nodescripts, the `ready` check-in and an SSH login. One pass over every
 * waiting node per poll; SSH probes run in the background so a slow node never holds up
 * the others' progress lines.
 */
export async function reinstall(nodes: Node[], b: ReinstallBackend, o: ReinstallOptions): Promise<NodeOutcome[]> {
  const start = b.now();
  const pollMs = o.pollMs ?? 1000;
  const sshEvery = o.sshEveryMs ?? 3000;
  const heartbeat = o.heartbeatMs ?? 30_000;
  let lastSaid = b.now();
  const say = (l: string) => {
    lastSaid = b.now();
    o.onProgress?.(l);
  };
  b.setBootOnce(nodes);
  for (const n of nodes) b.record({ mac: n.mac, node: n.name, kind: 'reinstall.start', detail: { wait: o.wait, timeoutS: o.timeoutMs / 1000 } });

  const secs = () => Math.round((b.now() - start) / 100) / 10;
  const tracks: Tracking[] = nodes.map((node) => ({ node, stageKey: 'power', deadline: start + o.timeoutMs, probing: false, nextProbe: 0 }));
  const finish = (t: Tracking, out: Omit<NodeOutcome, 'node' | 'seconds'>) => {
    t.done = { node: t.node.name, seconds: secs(), ...out };
    b.record({ mac: t.node.mac, node: t.node.name, kind: out.result === 'failed' || out.result === 'timeout' ? 'reinstall.fail' : 'reinstall.end', detail: { ...out } });
  };

  await mapLimit(tracks, o.parallel, async (t) => {
    // Without this a machine whose firmware boots its disk first never asks pxeherd.
    const x = await b.setBootPxe(t.node);
    if (!x.ok) {
      finish(t, { result: 'failed', stage: 'power', message: `setting the next boot to PXE failed (nothing was power cycled): ${x.error ?? 'unknown error'}`, lastEvent: null });
      return;
    }
    say(x.skipped ? `${t.node.name}: ${x.output}` : `${t.node.name}: next boot from the network (once)`);
    const p = await b.powerCycle(t.node);
    if (!p.ok) finish(t, { result: 'failed', stage: 'power', message: `power cycle failed: ${p.error ?? 'unknown error'}`, lastEvent: null });
    else say(`${t.node.name}: power cycled (${p.driver})${o.wait ? ', waiting for DHCP' : ''}`);
  });
  if (!o.wait) {
    for (const t of tracks) if (!t.done) finish(t, { result: 'started', stage: 'power', message: 'boot mode once, next boot PXE, power cycled', lastEvent: null });
    return tracks.map((t) => t.done!);
  }

  for (;;) {
    const now = b.now();
    for (const t of tracks) {
      if (t.done) continue;
      const p = followBoot(b.eventsSince(t.node, start));
      const last = p.last ? describeEvent(p.last) : null;
      if (p.failure) {
        finish(t, { result: 'failed', stage: p.stage, message: p.failure, lastEvent: last });
        say(`${t.node.name}: FAILED at ${p.label}: ${p.failure}`);
        continue;
      }
      const key = p.ready ? 'ssh' : p.label;
      if (key !== t.stageKey) {
        t.stageKey = key;
        say(`${t.node.name}: ${p.ready ? 'checked in ready, waiting for SSH' : p.label}${last && !p.ready ? ` (${last})` : ''}`);
      }
      if (now >= t.deadline) {
        const stage: Stage = p.ready ? 'ssh' : p.stage;
        const waited = p.ready ? `no SSH login${t.sshError ? `: ${t.sshError}` : ''}` : `no progress after ${p.label}`;
        finish(t, { result: 'timeout', stage, message: `timed out after ${fmtSeconds(o.timeoutMs)}: ${waited}`, lastEvent: last });
        say(`${t.node.name}: timed out at ${p.ready ? 'ssh' : p.label}`);
        continue;
      }
      if (p.ready && !t.probing && now >= t.nextProbe) {
        t.probing = true;
        t.nextProbe = now + sshEvery;
        const budget = Math.max(500, Math.min(10_000, t.deadline - now));
        b.probeSsh(t.node, budget).then(
          () => {
            t.probing = false;
            if (t.done) return;
            finish(t, { result: 'ready', stage: 'ssh', message: 'checked in ready and answers SSH', lastEvent: last });
            say(`${t.node.name}: ready (${secs()} s)`);
          },
          (e: Error) => {
            t.probing = false;
            t.sshError = e.message;
          },
        );
      }
    }
    if (tracks.every((t) => t.done)) break;
    if (b.now() - lastSaid >= heartbeat) {
      const waiting = tracks.filter((t) => !t.done);
      say(`waiting for ${waiting.length} node(s) (${secs()} s): ${waiting.slice(0, 8).map((t) => `${t.node.name} at ${t.stageKey}`).join(', ')}${waiting.length > 8 ? ', ...' : ''}`);
    }
    await b.sleep(pollMs);
  }
  return tracks.map((t) => t.done!);
}
