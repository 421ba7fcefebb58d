/**
 * A real IPMI BMC for the lab: OpenIPMI's ipmi_sim answering IPMI over LAN (RMCP+, lanplus) on
 * an address inside the lab's server namespace, wired to one QEMU machine:
 * - the machine has the BMC as its own (QEMU `ipmi-bmc-extern` + `isa-ipmi-kcs`, connected to
 *   ipmi_sim's KCS serial port with the VM codec);
 * - chassis power and boot flags go through test/lab/ipmi-chassis.sh (ipmi_sim's
 *   chassis_control program), which starts and stops the QEMU process and hands the boot
 *   device to it (`-boot order=n` after `chassis bootdev pxe`, once).
 * Power status is whether that QEMU process is alive. The machine: BIOS (SeaBIOS), an e1000
 * with the iPXE ROM on a tap of br0, an empty virtio disk with a serial number, serial console
 * to a file.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { sh, waitFor, type Lab } from './lab.js';
import { labAccel } from './qemu.js';

export interface SimBmcOptions {
  lab: Lab;
  dir: string;
  /** The BMC's IPMI user and password (at most 16 characters: IPMI 1.5 limit, kept for both). */
  user: string;
  password: string;
  /** The machine's NIC. */
  mac: string;
  /** Address ipmi_sim's LAN channel listens on (default: the lab server's address). */
  address?: string;
  port?: number;
  memMb?: number;
  /** Size of the machine's (sparse, empty) virtio disk. */
  diskMb?: number;
  diskSerial?: string;
}

export interface SimBmc {
  host: string;
  port: number;
  dir: string;
  serialLog: string;
  /** What ipmi_sim asked of the chassis, one line per call (`get power boot`, `set boot pxe`, `start order=n`). */
  chassisLog: string;
  proc: ChildProcess;
  /** PID of the running QEMU, undefined when the machine is off. */
  vmPid(): number | undefined;
  console(): string;
  chassis(): string[];
  stop(): void;
}

const CHASSIS = path.join(import.meta.dirname, 'ipmi-chassis.sh');

export async function startSimBmc(o: SimBmcOptions): Promise<SimBmc> {
  const dir = path.join(o.dir, 'bmc');
  fs.mkdirSync(path.join(dir, 'state'), { recursive: true });
  const host = o.address ?? o.lab.serverIp;
  const port = o.port ?? 623;
  if (o.password.length > 16 || /["\s]/.test(o.password)) throw new Error('ipmi_sim password: at most 16 characters, no blanks or quotes');
  const tap = o.lab.addTap();
  const serialLog = path.join(dir, 'serial.log');
  const chassisLog = path.join(dir, 'chassis.log');
  fs.writeFileSync(serialLog, '');
  fs.writeFileSync(chassisLog, '');
  const disk = path.join(dir, 'disk.img');
  fs.writeFileSync(disk, '');
  fs.truncateSync(disk, (o.diskMb ?? 64) * 1024 * 1024);
  const kcsPort = 9002;
  // The machine; $1 is what the chassis program chose: n (network) or c (disk). Only that
  // device gets a bootindex and strict=on makes the BIOS try nothing else.
  fs.writeFileSync(
    path.join(dir, 'start-vm'),
    `#!/bin/sh
# Network boot: the NIC first and the disk second (a network boot that ends in boot mode local
# falls through to it; with strict=on SeaBIOS gives iPXE's sanboot only listed disks).
if [ "$1" = n ]; then nic=",bootindex=1"; hd=",bootindex=2"; else nic=""; hd=",bootindex=1"; fi
exec qemu-system-x86_64 -accel ${labAccel()} -machine pc -m ${o.memMb ?? 256} -smp 1 -nographic -monitor none \\
  -chardev file,id=ser0,path=${serialLog},append=on -serial chardev:ser0 \\
  -pidfile ${path.join(dir, 'qemu.pid')} \\
  -chardev socket,id=ipmi0,host=127.0.0.1,port=${kcsPort},reconnect=2 \\
  -device ipmi-bmc-extern,id=bmc0,chardev=ipmi0 -device isa-ipmi-kcs,bmc=bmc0 \\
  -netdev tap,id=n0,ifname=${tap},script=no,downscript=no \\
  -device e1000,netdev=n0,mac=${o.mac},romfile=/usr/lib/ipxe/qemu/pxe-e1000.rom$nic \\
  -drive file=${disk},format=raw,if=none,id=hd0 -device virtio-blk-pci,drive=hd0,serial=${o.diskSerial ?? 'PXEHERDBMC'}$hd \\
  -boot strict=on
`,
    { mode: 0o755 },
  );
  const lanConf = path.join(dir, 'lan.conf');
  fs.writeFileSync(
    lanConf,
    `name "pxeherdlab"
set_working_mc 0x20
  startlan 1
    addr ${host} ${port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user md2 md5 straight
    allowed_auths_operator md2 md5 straight
    allowed_auths_admin md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  serial kcs 127.0.0.1 ${kcsPort} codec VM
  chassis_control "${CHASSIS} ${dir}"
  user 2 true "${o.user}" "${o.password}" admin 10 md2 md5 straight
`,
  );
  const emu = path.join(dir, 'bmc.emu');
  fs.writeFileSync(emu, 'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n');
  const log = path.join(dir, 'ipmi_sim.log');
  const proc = o.lab.spawnInNs('ipmi_sim', ['-c', lanConf, '-f', emu, '-s', path.join(dir, 'state'), '-n'], { log });
  // Ready once its LAN channel's UDP socket is bound.
  await waitFor('ipmi_sim to listen', 10_000, () => {
    if (proc.exitCode !== null) throw new Error(`ipmi_sim exited (${proc.exitCode}): ${fs.readFileSync(log, 'utf8')}`);
    return udpListeners(o.lab.ns).includes(`${host}:${port}`);
  });
  const pidFile = path.join(dir, 'qemu.pid');
  const bmc: SimBmc = {
    host,
    port,
    dir,
    serialLog,
    chassisLog,
    proc,
    vmPid() {
      const pid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8').trim()) : NaN;
      if (!Number.isInteger(pid) || pid <= 0) return undefined;
      try {
        process.kill(pid, 0);
        return pid;
      } catch {
        return undefined;
      }
    },
    console: () => fs.readFileSync(serialLog, 'utf8'),
    chassis: () => fs.readFileSync(chassisLog, 'utf8').split('\n').filter(Boolean).map((l) => l.replace(/^\d+ /, '')),
    stop() {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      const pid = bmc.vmPid();
      if (pid) process.kill(pid, 'SIGKILL');
    },
  };
  return bmc;
}

/** UDP sockets listening in a namespace (ss -uln). */
function udpListeners(ns: string): string {
  return sh('ss', ['-H', '-uln'], { ns, allowFail: true });
}
