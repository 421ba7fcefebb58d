#!/bin/sh
# Peer fetch (issue 19) against a plain download of the same file, in the same run:
#   1. nginx serving server A's r1/rootfs.squashfs  (curl -> nginx)
#   2. server A serving it (curl -> pxeherd A, file verified once beforehand)
#   3. server B lacking it: curl -> B, which fetches from A, verifies sha256, renames, serves
#   4. pxeherd vnfs sync on a third state directory (fetch + verify, no serving)
# Usage: sh bench/peers-fetch.sh [MiB]   (needs npm run build, mksquashfs, nginx, curl)
set -eu
MIB=${1:-256}
CLI="$(cd "$(dirname "$0")/.." && pwd)/dist/cli.js"
T=$(mktemp -d /tmp/phpeerbench-XXXX); chmod 755 "$T"
trap 'kill $PA $PB $PN 2>/dev/null || true; rm -rf "$T"' EXIT
mkdir -p "$T/tree/data" "$T/ng/logs" "$T/ng/tmp"
head -c $((MIB * 1048576)) /dev/urandom > "$T/tree/data/blob"
C='tftp: { port: 0 }\nprovisiond: { port: 0 }\nadmin: { port: 0 }\naddress: 127.0.0.1\nnodes: { auto_register: false }\n'
printf "statedir: $T/a\nserver_id: a\nhttp: { port: 18981 }\n$C" > "$T/a.yaml"
printf "statedir: $T/b\ndatabase: sqlite:$T/a/pxeherd.db\nserver_id: b\nhttp: { port: 18982 }\nimages: { origins: [\"http://127.0.0.1:18981\"] }\n$C" > "$T/b.yaml"
printf "statedir: $T/c\ndatabase: sqlite:$T/a/pxeherd.db\nserver_id: c\nhttp: { port: 0 }\nimages: { origins: [\"http://127.0.0.1:18981\"] }\n$C" > "$T/c.yaml"
node "$CLI" vnfs import img "$T/tree" --config "$T/a.yaml" --json > /dev/null
SIZE=$(stat -c %s "$T/a/vnfs/img/r1/rootfs.squashfs")
cat > "$T/ng/nginx.conf" <<NG
daemon off; worker_processes 1; pid $T/ng/nginx.pid; error_log $T/ng/logs/error.log warn;
events { worker_connections 64; }
http { access_log off; sendfile on; client_body_temp_path $T/ng/tmp/b; proxy_temp_path $T/ng/tmp/p; fastcgi_temp_path $T/ng/tmp/f;
  server { listen 127.0.0.1:18983; root $T/a; default_type application/octet-stream; } }
NG
nginx -c "$T/ng/nginx.conf" -p "$T/ng" -e "$T/ng/logs/error.log" & PN=$!
node "$CLI" serve --config "$T/a.yaml" > "$T/a.log" 2>&1 & PA=$!
node "$CLI" serve --config "$T/b.yaml" > "$T/b.log" 2>&1 & PB=$!
sleep 2
get() { curl -sS -o /dev/null -w '%{time_total}' "$1"; }
U=/vnfs/img/r1/rootfs.squashfs
get "http://127.0.0.1:18981$U" > /dev/null   # A hashes its own file once (first serve)
NGINX=$(get "http://127.0.0.1:18983$U")
A=$(get "http://127.0.0.1:18981$U")
B=$(get "http://127.0.0.1:18982$U")
get "http://127.0.0.1:18982$U" > /dev/null   # second serve fills its in-memory file cache, as for A
B2=$(get "http://127.0.0.1:18982$U")
S0=$(date +%s.%N); node "$CLI" vnfs sync img --config "$T/c.yaml" --json > /dev/null 2>&1; S1=$(date +%s.%N)
FETCHMS=$(sqlite3 "$T/a/pxeherd.db" "SELECT json_extract(detail,'\$.ms') FROM events WHERE kind='vnfs.fetch' AND server_id='b'" 2>/dev/null || echo '?')
echo "file: $SIZE bytes"
awk -v s="$SIZE" -v n="$NGINX" -v a="$A" -v b="$B" -v b2="$B2" -v f="$FETCHMS" -v s0="$S0" -v s1="$S1" 'BEGIN {
  m = s / 1048576; sy = s1 - s0;
  printf "nginx download                 %6.3f s  %7.0f MiB/s  1.00x\n", n, m / n;
  printf "pxeherd A (verified, served)   %6.3f s  %7.0f MiB/s  %.2fx nginx time\n", a, m / a, a / n;
  printf "pxeherd B first (fetch+serve)  %6.3f s  %7.0f MiB/s  %.2fx nginx time (fetch alone %s ms)\n", b, m / b, b / n, f;
  printf "pxeherd B 3rd (verified)       %6.3f s  %7.0f MiB/s  %.2fx nginx time\n", b2, m / b2, b2 / n;
  printf "vnfs sync (CLI, fetch+verify)  %6.3f s  %7.0f MiB/s  %.2fx nginx time (includes CLI start)\n", sy, m / sy, sy / n;
}'
