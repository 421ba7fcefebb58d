import type { BootEvent } from '../nodes/types.js';
import { summarize } from '../admin/timeline.js';

/**
 * Where a reinstalling node is, read from its boot events (oldest first) since the
 * reinstall began. Stages only move forward; a later retry of an earlier step (a second
 * DHCP DISCOVER) does not move the node back.
 */
export type Stage = 'power' | 'dhcp' | 'tftp' | 'ipxe' | 'kernel' | 'initrd' | 'provision' | 'image' | 'install' | 'ready' | 'ssh';

// image: a VNFS with a root filesystem being fetched, verified, mounted (stateless and disk);
// install: written to the node's disk (install=disk), then the reboot into it until the OS checks in.
const RANK: Record<Stage, number> = { power: 0, dhcp: 1, tftp: 2, ipxe: 3, kernel: 4, initrd: 5, provision: 6, image: 7, install: 8, ready: 9, ssh: 10 };

export interface BootProgress {
  stage: Stage;
  /** "provision init" rather than just "provision": the state word the node asked for. */
  label: string;
  /** The node checked in with state "ready". */
  ready: boolean;
  /** Set when the boot failed for good, e.g. `nodescript init/all/50-x failed (exit code 1)`. */
  failure?: string;
  last?: BootEvent;
}

function stageOf(ev: BootEvent): { stage: Stage; label?: string } | undefined {
  const d = (ev.detail ?? {}) as Record<string, unknown>;
  const [area] = ev.kind.split('.');
  if (area === 'dhcp') return { stage: 'dhcp' };
  if (area === 'tftp') return { stage: 'tftp' };
  if (ev.kind === 'http.ipxe') return { stage: 'ipxe' };
  if (ev.kind === 'http.kernel') return { stage: 'kernel' };
  if (ev.kind === 'http.initrd') return { stage: 'initrd' };
  if (ev.kind === 'image.download' || ev.kind === 'image.verify' || ev.kind === 'image.unpack') return { stage: 'image', label: typeof d.rev === 'number' ? `image r${d.rev}` : 'image' };
  if (ev.kind === 'image.switch_root') return { stage: 'image', label: 'image mounted, starting its init' };
  if (ev.kind === 'install.start') return { stage: 'install', label: `install to disk${typeof d.disk === 'string' ? ` ${d.disk}` : ''}` };
  if (ev.kind === 'install.write') return { stage: 'install', label: 'install: image written, configuring and installing the boot loader' };
  if (ev.kind === 'install.done' || ev.kind === 'install.recorded') return { stage: 'install', label: 'installed, booting from its disk' };
  if (ev.kind === 'provision.start' || ev.kind === 'provision.end') {
    const state = typeof d.state === 'string' ? d.state : '';
    if (state === 'ready') return { stage: 'ready', label: 'ready' };
    return { stage: 'provision', label: state ? `provision ${state}` : 'provision' };
  }
  return undefined;
}

export function describeEvent(ev: BootEvent): string {
  const s = summarize(ev);
  return s ? `${ev.kind} ${s}` : ev.kind;
}

export function followBoot(events: readonly BootEvent[]): BootProgress {
  const p: BootProgress = { stage: 'power', label: 'power', ready: false };
  for (const ev of events) {
    if (ev.kind.startsWith('reinstall.') || ev.kind.startsWith('power.')) continue;
    p.last = ev;
    const d = (ev.detail ?? {}) as Record<string, unknown>;
    const s = stageOf(ev);
    if (s && RANK[s.stage] >= RANK[p.stage]) {
      p.stage = s.stage;
      p.label = s.label ?? s.stage;
    }
    if (s?.stage === 'ready' && !(ev.kind === 'provision.end' && d.ok === false)) {
      p.ready = true;
      break;
    }
    if (ev.kind === 'nodescript.fail' && d.onError !== 'continue') {
      p.failure = `nodescript ${String(d.script ?? '?')} failed${d.reason ? ` (${String(d.reason)})` : ''}`;
      // The stream ends here (on_error abort): the failing script is the event to show.
      break;
    }
    if (ev.kind === 'install.fail') {
      // Stage one stops after an install failure (nothing reboots): waiting on is pointless.
      p.failure = `install to disk failed at ${String(d.stage ?? '?')}: ${String(d.error ?? 'no reason given')}`;
      break;
    }
    if (ev.kind === 'wipe.fail') {
      // 07-disk-wipe stops the boot: nothing is installed onto a half-erased machine.
      p.failure = `wiping disk ${String(d.disk ?? '?')} failed: ${String(d.error ?? 'no reason given')}`;
      break;
    }
    if (ev.kind === 'provision.end' && d.ok === false) {
      const failed = Array.isArray(d.failed) && d.failed.length ? ` (scripts: ${d.failed.join(', ')})` : '';
      p.failure = `provision ${String(d.state ?? '')} failed${failed}`.replace('  ', ' ');
      break;
    }
  }
  return p;
}
