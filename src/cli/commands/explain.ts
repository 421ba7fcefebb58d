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
    .option('--http', 'same as --http-client')
    .option('--v6', 'the DHCPv6 answer (Advertise), decoded, instead of the DHCPv4 one')
    .option('--proxy', 'answer as in proxyDHCP mode, whatever dhcp.mode says')
    .addOption(new Option('--json', 'machine-readable output (stable schema)'))
    .action(
      run(async (ctx, mac: string, o: { arch?: number; ipxe?: boolean; httpClient?: boolean; http?: boolean; proxy?: boolean; v6?: boolean }) => {
        const parsed = parseMac(mac);
        if (!parsed.ok) throw new InvalidInput(parsed.error, 'mac');
        if (o.http) o.httpClient = true;
        if (o.v6) {
          if (o.proxy) throw new InvalidInput('--proxy is DHCPv4 only (there is no ProxyDHCP in DHCPv6)', 'proxy');
          const { formatExplanation6 } = await import('../../dhcp6/explain.js');
          const { explainBoot6 } = await import('../../server/explain.js');
          const e = explainBoot6(ctx.config, ctx.store, { mac: parsed.mac, arch: o.arch, ipxe: o.ipxe, httpClient: o.httpClient });
          ctx.print(e, () => formatExplanation6(e));
          return;
        }
        const { formatExplanation } = await import('../../dhcp/explain.js');
        const { explainBoot } = await import('../../server/explain.js');
        const e = explainBoot(ctx.config, ctx.store, { mac: parsed.mac, arch: o.arch, ipxe: o.ipxe, httpClient: o.httpClient, proxy: o.proxy });
        const script = e.ipxe_script;
        ctx.print(e, () => {
          let t = formatExplanation(e);
          const bl = e.boot_loader;
          t += `\nboot loader ${bl.loader} (attribute boot_loader${bl.error ? `: ${bl.error}` : ''}); CPU ${bl.arch} (${bl.arch_source === 'attribute' ? 'attribute arch' : bl.arch_source === 'dhcp' ? 'from --arch' : 'default'})\n`;
          const cfg = e.boot_config;
          if (cfg && cfg.kind !== 'ipxe') {
            if ('error' in cfg) t += `\n${cfg.kind} config ${cfg.name}: cannot be rendered: ${cfg.error}\n`;
            else t += `\n${cfg.kind} config (${cfg.name}, template ${cfg.template}, mode ${cfg.mode}):\n${cfg.text.replace(/^/gm, '  ')}\n`;
          } else if ('error' in script) t += `\niPXE script: cannot be rendered: ${script.error}\n`;
          else t += `\niPXE script (/boot/${parsed.mac}.ipxe, template ${script.template}, mode ${script.mode}):\n${script.text.replace(/^/gm, '  ')}\n`;
          return t;
        });
      }),
    );
}
