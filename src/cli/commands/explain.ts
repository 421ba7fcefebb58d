import { Command, Option } from 'commander';
import type { Run } from '../main.js';
import { InvalidInput, parseMac } from '../../nodes/mac.js';

/**
 * `pxeherd explain <MAC>`: the DHCP answer a client would get and the iPXE script it would
 * then be served, computed by the real handler and renderer against a read-only view of the
 * database. Nothing is registered, stored or switched (a `once` node stays `once`).
 */
export function explainCommand(run: Run): Command {
  return new Command('explain')
    .description('the DHCP answer and boot chain a client would get, and why (changes nothing)')
    .argument('<MAC>', "the client's MAC address")
    .option('--arch <N>', 'client architecture (DHCP option 93): 0 BIOS, 7/9 UEFI x64, 11 arm64, 16 UEFI HTTP', (v) => {
      if (!/^\d+$/.test(v) || Number(v) > 65535) throw new InvalidInput(`--arch must be a number 0-65535, not "${v}"`, 'arch');
      return Number(v);
    })
    .option('--ipxe', 'the client is iPXE already (user class "iPXE")')
    .option('--http-client', 'UEFI HTTP boot firmware (vendor class HTTPClient)')
    .option('--proxy', 'answer as in proxyDHCP mode, whatever dhcp.mode says')
    .addOption(new Option('--json', 'machine-readable output (stable schema)'))
    .action(
      run(async (ctx, mac: string, o: { arch?: number; ipxe?: boolean; httpClient?: boolean; proxy?: boolean }) => {
        const parsed = parseMac(mac);
        if (!parsed.ok) throw new InvalidInput(parsed.error, 'mac');
        const { explain, formatExplanation } = await import('../../dhcp/explain.js');
        const { explainBackend } = await import('../../server/backends.js');
        const { resolveServerAddress } = await import('../../util/net.js');
        const { bootServiceFor } = await import('../../boot/service.js');
        const { nodeTokensFor } = await import('../../security/tokens.js');
        const config = ctx.config;
        const { address } = resolveServerAddress(config.address, config.interface);
        const e = explain(
          explainBackend(ctx.store),
          { config: config.dhcp, serverAddress: address, httpPort: config.http.port, autoRegister: config.nodes.auto_register },
          { mac: parsed.mac, arch: o.arch, ipxe: o.ipxe, httpClient: o.httpClient, proxy: o.proxy },
        );
        // The script iPXE would fetch next (what /boot/<mac>.ipxe answers now).
        let script: { template: string; mode: string; text: string } | { error: string };
        try {
          const tokens = config.security.node_tokens ? nodeTokensFor(config.statedir, config.security.token_ttl_seconds) : undefined;
          const boot = bootServiceFor({ config, store: ctx.store, serverAddress: address, tokens });
          const r = boot.renderBootScript(parsed.mac);
          script = { template: r.template, mode: String(r.mode), text: r.text };
        } catch (err) {
          script = { error: (err as Error).message };
        }
        ctx.print({ ...e, ipxe_script: script }, () => {
          let t = formatExplanation(e);
          if ('error' in script) t += `\niPXE script: cannot be rendered: ${script.error}\n`;
          else t += `\niPXE script (/boot/${parsed.mac}.ipxe, template ${script.template}, mode ${script.mode}):\n${script.text.replace(/^/gm, '  ')}\n`;
          return t;
        });
      }),
    );
}
