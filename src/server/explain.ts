import type { Config } from '../config/schema.js';
import type { Store } from '../store/store.js';
import { explain, type ExplainClient, type Explanation } from '../dhcp/explain.js';
import { explainBackend } from './backends.js';
import { interfaceMac, resolveServerAddress, resolveServerAddress6 } from '../util/net.js';
import { explain6, type Explain6Client, type Explanation6 } from '../dhcp6/explain.js';
import { duidLl } from '../dhcp6/options.js';
import { bootServiceFor, type BootService } from '../boot/service.js';
import { nodeTokensFor } from '../security/tokens.js';
import { bootLoaderOf, cpuOfClientArch, nodeArch, type BootLoader, type CpuArch } from '../boot/loader.js';
import type { TemplateKind } from '../boot/templates.js';

type RenderedText = { template: string; mode: string; text: string } | { error: string };

export type ExplainedBoot = Explanation & {
  ipxe_script: RenderedText;
  /** The node's chain (attribute boot_loader, node beats group) and its CPU. */
  boot_loader: { loader: BootLoader; error?: string; arch: CpuArch; arch_source: 'attribute' | 'dhcp' | 'default' };
  /** The configuration the offered loader reads (pxelinux.cfg/01-<mac>, grub.cfg, or the iPXE script). */
  boot_config: ({ kind: TemplateKind; name: string } & RenderedText) | null;
};

/**
 * What a client would get: the DHCP answer (the real handler against a read-only view) and
 * the iPXE script /boot/<mac>.ipxe would serve now. Shared by `pxeherd explain` and the API.
 */
export function explainBoot(
  config: Config,
  store: Store,
  client: ExplainClient,
  serverAddress?: string,
  /** The running server's boot renderer; without one (the CLI) a renderer is built for this call. */
  boot?: Pick<BootService, 'renderBootScript' | 'renderFor'>,
): ExplainedBoot {
  const address = serverAddress ?? resolveServerAddress(config.address, config.interface).address;
  const e = explain(explainBackend(store), { config: config.dhcp, serverAddress: address, httpPort: config.http.port, autoRegister: config.nodes.auto_register }, client);
  const node = store.nodes.byMac(e.mac);
  const attrs = node ? store.attrsFor(node) : {};
  const chosen = bootLoaderOf(attrs);
  const cpu = nodeArch(attrs, cpuOfClientArch(client.arch));
  const opts = { arch: cpu.arch };
  const renderer = boot ?? bootServiceFor({ config, store, serverAddress: address, tokens: config.security.node_tokens ? nodeTokensFor(config.statedir, config.security.token_ttl_seconds) : undefined });
  const attempt = (fn: () => { template: string; mode: unknown; text: string }): RenderedText => {
    try {
      const r = fn();
      return { template: r.template, mode: String(r.mode), text: r.text };
    } catch (err) {
      return { error: (err as Error).message };
    }
  };
  const script = attempt(() => renderer.renderBootScript(e.mac, opts));
  // Which configuration the offered loader reads next.
  const file = e.bootFile ?? '';
  const hy = e.mac.replace(/:/g, '-');
  let bootConfig: ExplainedBoot['boot_config'] = null;
  if (/pxelinux/.test(file)) bootConfig = { kind: 'pxelinux', name: `pxelinux.cfg/01-${hy}`, ...attempt(() => renderer.renderFor('pxelinux', e.mac, opts)) };
  else if (/grub|shim/.test(file)) bootConfig = { kind: 'grub', name: /-http\.efi$/.test(file) ? `grub/grub.cfg-${e.mac}` : 'grub/grub.cfg (the machine is known by its address)', ...attempt(() => renderer.renderFor('grub', e.mac, opts)) };
  else if (file) bootConfig = { kind: 'ipxe', name: `/boot/${e.mac}.ipxe`, ...script };
  return { ...e, ipxe_script: script, boot_loader: { loader: chosen.loader, ...(chosen.error ? { error: chosen.error } : {}), arch: cpu.arch, arch_source: cpu.source }, boot_config: bootConfig };
}

/**
 * The DHCPv6 answer a client would get (`pxeherd explain <MAC> --v6`), by the real DHCPv6
 * handler against a read-only view of the store.
 */
export function explainBoot6(config: Config, store: Store, client: Explain6Client, serverAddress6?: string): Explanation6 {
  const v6 = serverAddress6 ?? resolveServerAddress6(config.dhcp6.address, config.interface)?.address;
  if (config.dhcp6.mode !== 'off' && !v6) {
    throw new Error(`dhcp6: no IPv6 address for the boot URLs (none on ${config.interface || 'any interface'}): set dhcp6.address`);
  }
  const mac = interfaceMac(config.interface) ?? '02:00:00:00:00:00';
  return explain6(
    {
      config: config.dhcp6,
      serverAddress: v6 ?? '::1',
      serverDuid: duidLl(mac),
      httpPort: config.http.port,
      bootFiles: config.dhcp.boot_files,
      autoRegister: config.nodes.auto_register,
      findNode: (m) => store.nodes.byMac(m),
      leases: store.leases6,
    },
    client,
  );
}
