#!/bin/sh
# pxeherd stage one: the machine's hardware as one JSON object on stdout, read from /proc and
# /sys only (busybox sh, awk, sed, tr: no dmidecode, lshw or ethtool in the initramfs).
# /init posts it to <master>/inventory?mac=..&token=.. before asking for "init".
#
# INV_ROOT=/some/dir reads $INV_ROOT/proc and $INV_ROOT/sys instead of the live ones, so the
# unit tests run this very script against captured trees.
R=${INV_ROOT:-}

# js VALUE: VALUE as a JSON string; control characters dropped (sysfs strings end in
# newlines, VPD serials may carry NULs), blanks around it trimmed.
js() {
  printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}
# num VALUE: a JSON number when VALUE is a non-negative integer, else null (speed is -1 or
# unreadable when the link is down).
num() {
  case "$1" in
    '' | *[!0-9]*) printf 'null' ;;
    *) printf '%s' "$1" ;;
  esac
}
# rd FILE: the first line of FILE, empty when it is absent or unreadable.
rd() { head -n 1 "$1" 2>/dev/null; }

# ---- CPU ----------------------------------------------------------------------------------
cpuinfo="$R/proc/cpuinfo"
cpus=$(grep -c '^processor' "$cpuinfo" 2>/dev/null)
cpus=${cpus:-0}
# x86 says "model name"; arm64 has no model line, "Hardware" or "CPU part" is the best there is.
cpu_model=$(awk -F: '/^model name/ { sub(/^[ \t]+/, "", $2); print $2; exit }' "$cpuinfo" 2>/dev/null)
[ -n "$cpu_model" ] || cpu_model=$(awk -F: '/^(Hardware|cpu model|CPU part)/ { sub(/^[ \t]+/, "", $2); print $2; exit }' "$cpuinfo" 2>/dev/null)

# ---- memory -------------------------------------------------------------------------------
mem_kb=$(awk '/^MemTotal:/ { print $2; exit }' "$R/proc/meminfo" 2>/dev/null)
mem_kb=${mem_kb:-0}
# MemTotal is what is left after the kernel's own reservations (a 64 GiB machine shows ~62.8):
# the online memory blocks of the hotplug interface add up to the installed size.
phys=''
mdir="$R/sys/devices/system/memory"
bs=$(rd "$mdir/block_size_bytes")
if [ -n "$bs" ]; then
  nblk=0
  for b in "$mdir"/memory*; do
    [ "$(rd "$b/online")" = 1 ] && nblk=$((nblk + 1))
  done
  [ "$nblk" -gt 0 ] && phys=$((nblk * 0x$bs))
fi

# ---- disks --------------------------------------------------------------------------------
disks=''
for d in "$R"/sys/block/*; do
  [ -e "$d" ] || continue
  name=${d##*/}
  case "$name" in
    loop* | ram* | zram* | dm-* | md* | sr* | fd* | nbd* | mmcblk*boot* | mmcblk*rpmb) continue ;;
  esac
  sectors=$(rd "$d/size")
  # Empty card readers and the like report no sectors: not a disk to install on.
  case "$sectors" in '' | 0 | *[!0-9]*) continue ;; esac
  model=$(rd "$d/device/model")
  serial=$(rd "$d/serial")
  [ -n "$serial" ] || serial=$(rd "$d/device/serial")
  # SATA/SAS serials live in the unit serial number VPD page: a 4-byte header, then the text.
  if [ -z "$serial" ] && [ -r "$d/device/vpd_pg80" ]; then
    serial=$(tail -c +5 "$d/device/vpd_pg80" 2>/dev/null | tr -d '\000')
  fi
  entry="{\"name\":$(js "$name"),\"size_bytes\":$((sectors * 512)),\"model\":$(js "$model"),\"serial\":$(js "$serial"),\"rotational\":$(num "$(rd "$d/queue/rotational")"),\"removable\":$(num "$(rd "$d/removable")")}"
  disks="${disks:+$disks,}$entry"
done

# ---- NICs ---------------------------------------------------------------------------------
nics=''
for n in "$R"/sys/class/net/*; do
  [ -e "$n" ] || continue
  name=${n##*/}
  [ "$name" = lo ] && continue
  # Bridges, bonds, VLANs and tunnels have no device behind them.
  [ -e "$n/device" ] || continue
  driver=$(sed -n 's/^DRIVER=//p' "$n/device/uevent" 2>/dev/null | head -n 1)
  if [ -z "$driver" ] && [ -L "$n/device/driver" ]; then
    driver=$(readlink "$n/device/driver")
    driver=${driver##*/}
  fi
  entry="{\"name\":$(js "$name"),\"mac\":$(js "$(rd "$n/address")"),\"driver\":$(js "$driver"),\"speed_mbps\":$(num "$(rd "$n/speed")"),\"carrier\":$(num "$(rd "$n/carrier")")}"
  nics="${nics:+$nics,}$entry"
done

# ---- DMI and firmware ---------------------------------------------------------------------
dmi="$R/sys/class/dmi/id"
firmware=bios
[ -d "$R/sys/firmware/efi" ] && firmware=uefi

printf '{"version":1,"cpu":{"model":%s,"count":%s},"memory_kb":%s,"memory_phys_bytes":%s,"disks":[%s],"nics":[%s],"dmi":{"vendor":%s,"product":%s,"serial":%s,"uuid":%s},"firmware":"%s"}\n' \
  "$(js "$cpu_model")" "$(num "$cpus")" "$(num "$mem_kb")" "$(num "$phys")" "$disks" "$nics" \
  "$(js "$(rd "$dmi/sys_vendor")")" "$(js "$(rd "$dmi/product_name")")" "$(js "$(rd "$dmi/product_serial")")" "$(js "$(rd "$dmi/product_uuid")")" "$firmware"
