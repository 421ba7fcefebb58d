#!/bin/sh
# ipmi_sim's chassis_control program for the lab: the wires between the simulated BMC and one
# QEMU machine, as a real BMC's power and boot lines are. ipmi_sim (OpenIPMI 2.0.33) keeps boot
# flags (Set/Get System Boot Options, parameter 5) only through such a program, and then asks it
# for power too, so this program starts and stops the QEMU process itself:
#   ipmi-chassis.sh DIR get power boot     -> "power:1" / "boot:pxe" lines
#   ipmi-chassis.sh DIR set power 1|0      -> start / stop QEMU (DIR/start-vm ORDER)
#   ipmi-chassis.sh DIR set reset 1        -> stop, start
#   ipmi-chassis.sh DIR set boot pxe|none|default|cdrom|bios
# A boot device other than "none" is used by the next power on and then cleared, as IPMI boot
# flags without the persistent bit are: pxe boots the NIC only, anything else the disk only.
dir=$1; shift
op=$1; shift
pidf=$dir/qemu.pid
echo "$(date +%s) $op $*" >> "$dir/chassis.log"

running() { [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; }
bootdev() { cat "$dir/bootdev" 2>/dev/null || echo none; }

start() {
  running && return 0
  if [ "$(bootdev)" = pxe ]; then order=n; else order=c; fi
  echo none > "$dir/bootdev"
  rm -f "$pidf"
  echo "$(date +%s) start order=$order" >> "$dir/chassis.log"
  setsid "$dir/start-vm" "$order" </dev/null >>"$dir/qemu.log" 2>&1 &
  i=0
  while [ $i -lt 100 ] && ! [ -s "$pidf" ]; do sleep 0.1; i=$((i+1)); done
  running
}

stop() {
  running || { rm -f "$pidf"; return 0; }
  pid=$(cat "$pidf")
  kill "$pid" 2>/dev/null
  i=0
  while [ $i -lt 50 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; i=$((i+1)); done
  kill -9 "$pid" 2>/dev/null
  rm -f "$pidf"
  echo "$(date +%s) stopped $pid" >> "$dir/chassis.log"
}

case $op in
  get)
    for what in "$@"; do
      case $what in
        power) if running; then echo power:1; else echo power:0; fi ;;
        boot) echo "boot:$(bootdev)" ;;
        *) echo "$what:0" ;;
      esac
    done
    ;;
  set)
    while [ $# -ge 2 ]; do
      what=$1; val=$2; shift 2
      case $what in
        power) if [ "$val" = 1 ]; then start || exit 1; else stop; fi ;;
        reset) stop; start || exit 1 ;;
        shutdown) stop ;;
        boot) echo "$val" > "$dir/bootdev" ;;
      esac
    done
    ;;
  *) exit 1 ;;
esac
exit 0
