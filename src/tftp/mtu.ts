/**
 * The largest TFTP block that fits one Ethernet frame of the serving interface. A client may
 * ask for blksize 65464 (RFC 2348 allows it); above the link MTU every block travels as IP
 * fragments, and PXE ROMs that cannot reassemble them stall at the first block. Like dnsmasq,
 * pxeherd caps the negotiated size at MTU - 32 (IPv4 20 + UDP 8 + TFTP 4) when it knows the
 * interface it serves (config `interface`).
 */
import fs from 'node:fs';

/** IPv4 + UDP + TFTP DATA headers. */
export const TFTP_OVERHEAD = 32;

/** Pure: the blksize ceiling for a configured maximum and an interface MTU (if known). */
export function blksizeCeiling(configured: number, mtu: number | undefined): number {
  if (mtu === undefined || !Number.isInteger(mtu) || mtu <= TFTP_OVERHEAD + 8) return configured;
  return Math.min(configured, mtu - TFTP_OVERHEAD);
}

/** The MTU of a network interface (Linux sysfs), or undefined when it cannot be read. */
export function interfaceMtu(iface: string, sysfs = '/sys/class/net'): number | undefined {
  if (!/^[A-Za-z0-9._@-]{1,15}$/.test(iface)) return undefined;
  try {
    const n = Number(fs.readFileSync(`${sysfs}/${iface}/mtu`, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}
