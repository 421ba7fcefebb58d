import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command, Option } from 'commander';
import type { Run } from '../main.js';
import { RuntimeFailure } from '../context.js';
import { buildStage1, DEFAULT_MODULES, installArm64Grub } from '../../stage1/build.js';
import { CPU_ARCHS, discoveryVnfsFor, parseCpuArch } from '../../boot/loader.js';
import { defaultCacheDir, Stage1Error } from '../../stage1/debs.js';

/** `pxeherd stage1 build`: the discovery/provisioning image, registered as VNFS "stage1". */
export function stage1Command(run: Run): Command {
  const stage1 = new Command('stage1').description('the stage-one image: a Debian kernel + busybox initramfs that runs the init nodescripts');
  stage1
    .command('build')
    .description('build vmlinuz + initrd.img from Debian packages and register them as VNFS "stage1"')
    .option('--out <DIR>', 'also keep vmlinuz and initrd.img in DIR')
    .option('--kernel-package <NAME>', 'kernel package (default: what linux-image-amd64 depends on)')
    .option('--cache <DIR>', 'where downloaded packages are kept between builds', defaultCacheDir())
    .option('--modules <LIST>', 'comma-separated NIC modules to include (their dependencies come along)', DEFAULT_MODULES.join(','))
    .option('--name <VNFS>', 'VNFS name to register (default: stage1, for arm64 stage1-arm64: the discovery image of that CPU)')
    .option('--arch <ARCH>', 'CPU of the image: x86_64 (amd64) or arm64 (aarch64); a foreign one is downloaded from Debian (dpkg --add-architecture), no emulation', 'x86_64')
    .option('--no-register', 'only build, do not register a VNFS')
    .addOption(new Option('--json', 'machine-readable output (stable schema)'))
    .action(
      run(async (ctx, o: { out?: string; kernelPackage?: string; cache: string; modules: string; name?: string; arch: string; register: boolean }) => {
        const arch = parseCpuArch(o.arch);
        if (!arch) throw new RuntimeFailure(`--arch "${o.arch}" is not a CPU pxeherd boots: use ${CPU_ARCHS.join(' or ')}`, 2);
        const name = o.name ?? discoveryVnfsFor('stage1', arch);
        // Loaded here: the boot renderer (handlebars) is not needed by other commands.
        const { defaultTemplateDirs } = await import('../../boot/service.js');
        const outDir = o.out ?? fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-stage1-out-'));
        if (!o.out && !o.register) throw new RuntimeFailure('--no-register without --out would throw the image away: give --out DIR', 2);
        try {
          let result;
          try {
            result = buildStage1({
              outDir,
              cacheDir: o.cache,
              templatesDirs: defaultTemplateDirs(ctx.config.statedir),
              kernelPackage: o.kernelPackage,
              modules: o.modules.split(',').map((s) => s.trim()).filter(Boolean),
              arch,
              log: (m) => ctx.io.err(`pxeherd: ${m}\n`),
            });
            // arm64 machines boot Debian's arm64 network GRUB, which an amd64 master cannot install as a package.
            if (arch === 'arm64') installArm64Grub(ctx.config.tftp.root || path.join(ctx.config.statedir, 'tftproot'), o.cache, (m) => ctx.io.err(`pxeherd: ${m}\n`));
          } catch (e) {
            if (e instanceof Stage1Error) throw new RuntimeFailure(e.message);
            throw e;
          }
          let vnfsDir: string | undefined;
          if (o.register) {
            // Keep an admin's command line across rebuilds.
            const existing = ctx.store.vnfs.get(name);
            // The VNFS's CPU: an attribute until the vnfs.arch column lands (see boot/loader.ts vnfsArch).
            ctx.nodes.addVnfs({ name, kernel: result.kernel, initrd: result.initrd, cmdline: existing?.cmdline ?? result.cmdline, attrs: { ...(existing?.attrs ?? {}), arch } });
            vnfsDir = ctx.nodes.vnfsDir(name);
          }
          ctx.print(
            {
              kernel: o.out ? result.kernel : null,
              initrd: o.out ? result.initrd : null,
              kernelVersion: result.kernelVersion,
              kernelPackage: result.kernelPackage,
              modules: result.modules,
              initrdBytes: result.initrdBytes,
              vnfs: o.register ? name : null,
              arch,
              vnfsDir: vnfsDir ?? null,
            },
            () =>
              `stage one: kernel ${result.kernelVersion} (${result.kernelPackage}), initrd ${(result.initrdBytes / 1048576).toFixed(2)} MiB, modules ${result.modules.join(' ')}\n` +
              (o.out ? `files: ${result.kernel} ${result.initrd}\n` : '') +
              (o.register ? `registered as VNFS ${name} (${arch}) in ${vnfsDir}\n` : ''),
          );
        } finally {
          if (!o.out) fs.rmSync(outDir, { recursive: true, force: true });
        }
      }),
    );
  return stage1;
}
