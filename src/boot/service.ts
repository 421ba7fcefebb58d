import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BootMode, EventSink, Node, Vnfs } from '../nodes/types.js';
import type { Config } from '../config/schema.js';
import type { Store } from '../store/store.js';
import { parseMac } from '../nodes/mac.js';
import type { NodeTokens } from '../security/tokens.js';
import { buildContext, decideBoot, type BootDecision, type ServerInfo } from './decide.js';
import { TemplateError, TemplateStore, templateCandidates, type TemplateKind } from './templates.js';
import { parseRev } from '../images/resolve.js';
import { localBootServed } from '../install/state.js';

/**
 * Pure: the revision a node boots and the VNFS record pointing at its files. A pin (the
 * field's NAME@REV, else the `vnfs_rev` attribute, node's over group's) picks
 * r<REV>/vmlinuz + r<REV>/initrd.img; otherwise the current revision (what VnfsRepo.get
 * already points at). A field pin on a VNFS without a root filesystem is an error; an
 * attribute pin there is ignored (a group attribute may cover nodes of several VNFS).
 */
export function bootRevision(vnfs: Vnfs, fieldPin: number | undefined, attrs: Record<string, string>): { vnfs: Vnfs; rev?: number } | { error: string } {
  const rooted = vnfs.currentRev !== null && vnfs.currentRev !== undefined;
  if (!rooted) {
    if (fieldPin !== undefined) return { error: `VNFS "${vnfs.name}" has no revisions (it is a kernel+initrd VNFS): set the node's vnfs to "${vnfs.name}" without @${fieldPin}` };
    return { vnfs };
  }
  const rev = fieldPin ?? parseRev(attrs.vnfs_rev) ?? (vnfs.currentRev as number);
  if (rev === vnfs.currentRev) return { vnfs, rev };
  return { vnfs: { ...vnfs, kernel: `r${rev}/vmlinuz`, initrd: `r${rev}/initrd.img` }, rev };
}
import { discoveryVnfsFor, nodeArch, vnfsArch, type ClientArchs, type CpuArch } from './loader.js';

/** The few things boot rendering needs from the database; a test fakes it in ten lines. */
export interface BootBackend {
  nodeByMac(mac: string): Node | undefined;
  /** Group attributes overridden by the node's own. */
  attrsFor(node: Node): Record<string, string>;
  vnfs(name: string): Vnfs | undefined;
  setBootMode(mac: string, mode: BootMode): void;
  /** Whether a VNFS has this revision (for pinned nodes); absent: every pin is taken as valid. */
  hasRevision?(name: string, rev: number): boolean;
  /** The CPU the machine's firmware named in its last DHCP request (undefined: not seen). */
  clientArch?(mac: string): CpuArch | undefined;
  /** A node was handed its local (disk) boot script: detects disk boots that came back to PXE. */
  localBootServed?(node: Node): void;
}

export function storeBootBackend(store: Store, archs?: ClientArchs, events?: EventSink): BootBackend {
  return {
    localBootServed: events ? (node) => localBootServed(store, events, node) : undefined,
    clientArch: archs ? (mac) => archs.get(mac) : undefined,
    nodeByMac: (mac) => store.nodes.byMac(mac),
    attrsFor: (node) => store.attrsFor(node),
    vnfs: (name) => store.vnfs.get(name),
    setBootMode: (mac, mode) => void store.nodes.set([mac], 'boot', mode),
    hasRevision: (name, rev) => store.vnfs.revision(name, rev) !== undefined,
  };
}

export interface Rendered {
  kind: TemplateKind;
  text: string;
  /** Template name used, e.g. ipxe/group/compute.ipxe */
  template: string;
  mode: BootDecision;
  node?: Node;
  vnfs?: string;
}

/** A boot script cannot be made: names the template (if any), the node and what is missing. */
export class BootError extends Error {
  constructor(
    message: string,
    readonly template: string,
    readonly mode: BootDecision,
    readonly node?: Node,
  ) {
    super(message);
    this.name = 'BootError';
  }
}

export interface BootServiceOptions {
  backend: BootBackend;
  templates: TemplateStore;
  server: ServerInfo;
  /** undefined = security.node_tokens off: scripts carry no token. */
  tokens?: NodeTokens;
  autoRegister: boolean;
  defaultVnfs: string;
  discoveryVnfs?: string;
  events?: EventSink;
  /**
   * After boot mode `once` switched a node to local, the same TFTP-served config (pxelinux,
   * grub) asked for again within this window gets the same provisioning answer: TFTP
   * clients ask twice (tsize probe, retries). iPXE fetches its script once. Default 60 s.
   */
  onceGraceMs?: number;
  now?: () => number;
}

/** The repository's templates/ directory (src/boot/ or dist/boot/ -> ../../templates). */
export function repoTemplatesDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'templates');
}

/** Override directory first, then the repository's templates. */
export function defaultTemplateDirs(statedir: string): string[] {
  return [path.join(statedir, 'templates'), repoTemplatesDir()];
}

/**
 * "What does this machine boot?" rendered as an iPXE script, a pxelinux config or a grub
 * config, from the same decision and the same template lookup.
 */
export class BootService {
  readonly discoveryVnfs: string;
  private readonly recentOnce = new Map<string, { r: Rendered; until: number }>();
  private readonly now: () => number;
  constructor(private readonly o: BootServiceOptions) {
    this.discoveryVnfs = o.discoveryVnfs ?? 'stage1';
    this.now = o.now ?? Date.now;
  }

  /**
   * Render without side effects (what `pxeherd explain` shows). `mac` in any accepted
   * spelling, or undefined when the loader did not say (pxelinux.cfg/default, grub.cfg).
   */
  render(kind: TemplateKind, mac: string | undefined, opts: { arch?: CpuArch; serverAddress?: string } = {}): Rendered {
    let canon = '';
    if (mac !== undefined) {
      const m = parseMac(mac);
      if (!m.ok) throw new BootError(m.error, '', 'unknown');
      canon = m.mac;
    }
    const recent = canon ? this.recentOnce.get(`${kind}|${canon}`) : undefined;
    if (recent && this.now() < recent.until) return recent.r;
    const node = canon ? this.o.backend.nodeByMac(canon) : undefined;
    const attrs = node ? this.o.backend.attrsFor(node) : {};
    // The node's CPU decides its discovery image and which VNFS kernels it may be given.
    const cpu = nodeArch(attrs, opts.arch ?? (canon ? this.o.backend.clientArch?.(canon) : undefined));
    const discoveryVnfs = discoveryVnfsFor(this.discoveryVnfs, cpu.arch);
    const decision = decideBoot(node, { autoRegister: this.o.autoRegister, defaultVnfs: this.o.defaultVnfs, discoveryVnfs });
    const who = node ? `node ${node.name} (${node.mac})` : canon ? `unknown machine ${canon}` : 'a machine that gave no MAC';
    let vnfs: Vnfs | undefined;
    if (decision.vnfs) {
      vnfs = this.o.backend.vnfs(decision.vnfs);
      if (!vnfs) {
        const hint = decision.vnfs === discoveryVnfs ? `build it with "pxeherd stage1 build${cpu.arch === 'x86_64' ? '' : ` --arch ${cpu.arch}`}"` : `add it with "pxeherd vnfs add ${decision.vnfs} --kernel FILE --initrd FILE"`;
        throw new BootError(`${who} boots VNFS "${decision.vnfs}", which does not exist: ${hint}`, '', decision.mode, node);
      }
      const varch = vnfsArch(vnfs);
      if (varch !== cpu.arch) {
        const from = cpu.source === 'attribute' ? 'its attribute arch' : cpu.source === 'dhcp' ? 'its firmware said so in DHCP option 93' : 'the default';
        throw new BootError(
          `${who} is ${cpu.arch} (${from}) but VNFS "${vnfs.name}" holds a ${varch} kernel: a node is never given a kernel of another architecture; give it a ${cpu.arch} VNFS (pxeherd node set vnfs NAME ${node?.name ?? canon})`,
          '',
          decision.mode,
          node,
        );
      }
    }
    let rev: number | undefined;
    if (vnfs && node) {
      const r = bootRevision(vnfs, decision.pin, attrs);
      if ('error' in r) throw new BootError(`${who}: ${r.error}`, '', decision.mode, node);
      if (r.rev !== undefined && r.rev !== vnfs.currentRev && this.o.backend.hasRevision && !this.o.backend.hasRevision(vnfs.name, r.rev)) {
        throw new BootError(`${who} is pinned to revision ${r.rev} of VNFS "${vnfs.name}", which does not exist: see "pxeherd vnfs revisions ${vnfs.name}" and change the pin (node set vnfs ${vnfs.name}@REV, or attribute vnfs_rev)`, '', decision.mode, node);
      }
      rev = r.rev;
      vnfs = r.vnfs;
    } else if (vnfs && vnfs.currentRev !== null && vnfs.currentRev !== undefined) {
      rev = vnfs.currentRev;
    }
    const candidates = templateCandidates(kind, decision.select);
    const found = this.o.templates.find(candidates);
    if (!found) {
      throw new BootError(`no ${kind} template for ${who} (mode ${decision.mode}): looked for ${candidates.join(', ')} in ${this.o.templates.dirs.join(', ')}`, '', decision.mode, node);
    }
    const token = this.o.tokens && canon ? this.o.tokens.issueToken(canon) : '';
    // Asked over IPv6: the URLs in the script point at the address the client reached.
    const server = opts.serverAddress ? { ...this.o.server, address: opts.serverAddress } : this.o.server;
    const ctx = buildContext({ decision, mac: canon, node, attrs, vnfs, rev, server, token });
    let text: string;
    try {
      text = this.o.templates.render(found, ctx);
    } catch (e) {
      if (e instanceof TemplateError) throw new BootError(`${e.message}, rendering for ${who}`, found.name, decision.mode, node);
      throw e;
    }
    return { kind, text, template: found.name, mode: decision.mode, node, vnfs: decision.vnfs || undefined };
  }

  /**
   * The script was handed to the machine: a node in boot mode `once` provisions this
   * time only, so it switches to `local` now (Apache VCL's reclaim/reload: switch when
   * the script is served, not when provisioning finishes, so a reboot loop cannot reinstall).
   */
  served(r: Rendered): { switchedTo?: BootMode } {
    if (r.mode === 'local' && r.kind === 'ipxe' && r.node) this.o.backend.localBootServed?.(r.node);
    if (r.mode === 'once' && r.node) {
      if (r.kind === 'ipxe') {
        this.o.backend.setBootMode(r.node.mac, 'local');
        return { switchedTo: 'local' };
      }
      const key = `${r.kind}|${r.node.mac}`;
      const now = this.now();
      const again = this.recentOnce.get(key);
      if (again && now < again.until) return {};
      this.o.backend.setBootMode(r.node.mac, 'local');
      for (const [k, v] of this.recentOnce) if (v.until <= now) this.recentOnce.delete(k);
      this.recentOnce.set(key, { r, until: now + (this.o.onceGraceMs ?? 60_000) });
      return { switchedTo: 'local' };
    }
    return {};
  }

  /** `renderBootScript(mac) -> {text, template, mode}` for `pxeherd explain` (no side effects). */
  renderBootScript(mac: string, opts: { arch?: CpuArch } = {}): Rendered {
    return this.render('ipxe', mac, opts);
  }

  /** Any kind, without side effects (`pxeherd explain` shows the config of the node's chain). */
  renderFor(kind: TemplateKind, mac: string, opts: { arch?: CpuArch } = {}): Rendered {
    return this.render(kind, mac, opts);
  }

  /**
   * Generated TFTP files (pxelinux.cfg/01-<mac>, pxelinux.cfg/default): the config, or
   * undefined when none can be made (the TFTP server then answers from disk or "not found";
   * the reason is recorded as `boot.error`). Serving counts as "served" for boot mode once
   * unless dryRun.
   */
  renderPxelinux(mac: string | undefined, opts: { dryRun?: boolean } = {}): Buffer | undefined {
    return this.generated('pxelinux', mac, opts);
  }

  /** grub/grub.cfg-01-<mac>, grub.cfg: as renderPxelinux. */
  renderGrub(mac: string | undefined, opts: { dryRun?: boolean } = {}): Buffer | undefined {
    return this.generated('grub', mac, opts);
  }

  private generated(kind: TemplateKind, mac: string | undefined, opts: { dryRun?: boolean }): Buffer | undefined {
    try {
      const r = this.render(kind, mac);
      if (!opts.dryRun) this.served(r);
      return Buffer.from(r.text);
    } catch (e) {
      if (!(e instanceof BootError)) throw e;
      this.o.events?.record({ mac: e.node?.mac ?? (mac && parseMac(mac).ok ? (parseMac(mac) as { mac: string }).mac : undefined), node: e.node?.name, kind: 'boot.error', detail: { kind, template: e.template, error: e.message } });
      return undefined;
    }
  }
}

/** BootService from the configuration, for the wiring and the CLI. */
export function bootServiceFor(args: {
  config: Config;
  store: Store;
  serverAddress: string;
  tokens?: NodeTokens;
  events?: EventSink;
  templatesDirs?: string[];
  archs?: ClientArchs;
}): BootService {
  const { config } = args;
  return new BootService({
    backend: storeBootBackend(args.store, args.archs, args.events),
    templates: new TemplateStore(args.templatesDirs ?? defaultTemplateDirs(config.statedir)),
    server: { address: args.serverAddress, httpPort: config.http.port, tftpPort: config.tftp.port },
    tokens: config.security.node_tokens ? args.tokens : undefined,
    autoRegister: config.nodes.auto_register,
    defaultVnfs: config.nodes.default_vnfs,
    events: args.events,
  });
}
