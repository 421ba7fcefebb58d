/** QEMU machines for the lab: BIOS or UEFI firmware, an iPXE NIC ROM or the firmware's own PXE. */
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Lab } from './lab.js';

export interface VmOptions {
  lab: Lab;
  name: string;
  mac: string;
  /** uefi-secure: OVMF with Microsoft's keys enrolled and Secure Boot enforced (needs SMM). arm64: qemu-system-aarch64 virt + AAVMF. */
  firmware: 'bios' | 'uefi' | 'uefi-secure' | 'arm64';
  /** e1000 with the iPXE ROM (default), or virtio-net-pci with no ROM: the firmware's own PXE (chainload path). */
  nic?: 'e1000-ipxe' | 'virtio-firmware-pxe';
  memMb?: number;
  cpus?: number;
  /** More QEMU arguments (e.g. -fw_cfg switches for OVMF). */
  extraArgs?: string[];
  /** Size of an empty extra disk in MiB (inventory tests). */
  diskMb?: number;
  /** Use this disk image (raw; created with diskMb when missing) instead of a fresh one: it outlives the VM. */
  diskFile?: string;
  /** Let the guest reboot (default: QEMU exits on reboot, -no-reboot). */
  reboot?: boolean;
  dir: string;
  /** OVMF settings through QEMU's fw_cfg, e.g. { 'opt/org.tianocore/IPv4PXESupport': 'n' }. */
  fwCfg?: Record<string, string>;
}

export interface Vm {
  serialLog: string;
  proc: ChildProcess;
  started: number;
  console(): string;
  waitForConsole(re: RegExp, ms: number): Promise<RegExpMatchArray>;
  kill(): void;
}

let kvmChecked: boolean | undefined;
/** /dev/kvm may exist without being usable (nested virtualisation off): try it once. */
export function kvmUsable(): boolean {
  if (kvmChecked !== undefined) return kvmChecked;
  if (!fs.existsSync('/dev/kvm')) return (kvmChecked = false);
  const r = spawnSync('qemu-system-x86_64', ['-accel', 'kvm', '-machine', 'none', '-nographic', '-S', '-display', 'none', '-monitor', 'none', '-serial', 'none'], { timeout: 3000 });
  // With KVM usable, qemu stays stopped (-S) until killed by the timeout; without, it exits at once with an error.
  kvmChecked = r.error !== undefined && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT';
  return kvmChecked;
}

/** PXEHERD_LAB_ACCEL=tcg|kvm|auto (default tcg: the lab facts were measured under TCG). */
export function labAccel(): 'kvm' | 'tcg' {
  const want = process.env.PXEHERD_LAB_ACCEL ?? 'tcg';
  if (want === 'kvm') return 'kvm';
  if (want === 'auto') return kvmUsable() ? 'kvm' : 'tcg';
  return 'tcg';
}

export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

/** Debian's OVMF with Secure Boot: the SMM build and the variable store with Microsoft's keys enrolled. */
export const OVMF_CODE_SECURE = '/usr/share/OVMF/OVMF_CODE_4M.ms.fd';
export const OVMF_VARS_SECURE = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';
export const AAVMF_CODE = '/usr/share/AAVMF/AAVMF_CODE.fd';
export const AAVMF_VARS = '/usr/share/AAVMF/AAVMF_VARS.fd';

export function startVm(o: VmOptions): Vm {
  const tap = o.lab.addTap();
  const serialLog = path.join(o.dir, `${o.name}.serial.log`);
  fs.writeFileSync(serialLog, '');
  const args = ['-accel', o.firmware === 'arm64' ? 'tcg' : labAccel(), '-m', String(o.memMb ?? 512), '-smp', String(o.cpus ?? 1), '-nographic', '-serial', `file:${serialLog}`, '-monitor', 'none', ...(o.reboot ? [] : ['-no-reboot'])];
  if (o.firmware === 'bios') args.push('-machine', 'pc');
  else if (o.firmware === 'uefi-secure') {
    const vars = path.join(o.dir, `${o.name}.OVMF_VARS.fd`);
    fs.copyFileSync(OVMF_VARS_SECURE, vars);
    // The Secure Boot build keeps its variables in SMM: q35 with smm=on and a secure flash.
    args.push('-machine', 'q35,smm=on', '-global', 'driver=cfi.pflash01,property=secure,value=on');
    args.push('-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE_SECURE}`, '-drive', `if=pflash,format=raw,unit=1,file=${vars}`);
  } else if (o.firmware === 'arm64') {
    const vars = path.join(o.dir, `${o.name}.AAVMF_VARS.fd`);
    fs.copyFileSync(AAVMF_VARS, vars);
    args.push('-machine', 'virt', '-cpu', 'cortex-a57');
    args.push('-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${AAVMF_CODE}`, '-drive', `if=pflash,format=raw,unit=1,file=${vars}`);
  } else {
    const vars = path.join(o.dir, `${o.name}.OVMF_VARS.fd`);
    fs.copyFileSync(OVMF_VARS, vars);
    args.push('-machine', 'q35', '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`, '-drive', `if=pflash,format=raw,unit=1,file=${vars}`);
  }
  args.push('-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no`);
  if (o.firmware === 'arm64' || o.firmware === 'uefi-secure') {
    // The firmware's own network stack (no iPXE ROM on arm64; an unsigned ROM would not run under Secure Boot).
    args.push('-device', `virtio-net-pci,netdev=n0,mac=${o.mac},romfile=,bootindex=1`);
  } else if ((o.nic ?? 'e1000-ipxe') === 'e1000-ipxe') {
    const rom = o.firmware === 'bios' ? '/usr/lib/ipxe/qemu/pxe-e1000.rom' : '/usr/lib/ipxe/qemu/efi-e1000.rom';
    args.push('-device', `e1000,netdev=n0,mac=${o.mac},romfile=${rom},bootindex=1`);
  } else {
    args.push('-device', `virtio-net-pci,netdev=n0,mac=${o.mac},romfile=,bootindex=1`);
  }
  if (o.diskMb || o.diskFile) {
    const disk = o.diskFile ?? path.join(o.dir, `${o.name}.disk.img`);
    if (!o.diskFile || !fs.existsSync(disk)) {
      fs.writeFileSync(disk, '');
      fs.truncateSync(disk, (o.diskMb ?? 4096) * 1024 * 1024);
    }
    // serial= belongs on the device: QEMU 7 refuses it as a -drive option.
    // bootindex 2: after the NIC, so the firmware tries the disk when the network boot exits.
    args.push('-drive', `file=${disk},format=raw,if=none,id=disk0`, '-device', `virtio-blk-pci,drive=disk0,serial=PXEHERD${o.name.toUpperCase().replace(/[^A-Z0-9]/g, '')}${o.diskFile ? ',bootindex=2' : ''}`);
  }
  for (const [name, value] of Object.entries(o.fwCfg ?? {})) args.push('-fw_cfg', `name=${name},string=${value}`);
  if (o.firmware === 'bios') args.push('-boot', 'n');
  if (o.extraArgs) args.push(...o.extraArgs);
  const qemu = o.firmware === 'arm64' ? 'qemu-system-aarch64' : 'qemu-system-x86_64';
  const proc = o.lab.spawnInNs(qemu, args, { log: path.join(o.dir, `${o.name}.qemu.log`) });
  const started = Date.now();
  const vm: Vm = {
    serialLog,
    proc,
    started,
    console: () => fs.readFileSync(serialLog, 'utf8'),
    async waitForConsole(re, ms) {
      const end = Date.now() + ms;
      for (;;) {
        const m = vm.console().match(re);
        if (m) return m;
        if (proc.exitCode !== null && !vm.console().match(re)) {
          throw new Error(`${o.name}: QEMU exited (${proc.exitCode}) before ${re}; console tail:\n${vm.console().slice(-3000)}`);
        }
        if (Date.now() > end) throw new Error(`${o.name}: no ${re} on the console within ${ms} ms; console tail:\n${vm.console().slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    kill() {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    },
  };
  return vm;
}
