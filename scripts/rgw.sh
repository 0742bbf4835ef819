#!/bin/sh
# A throwaway Ceph RGW (S3) on 127.0.0.1, for the benchmark, the tests and by hand.
#
#   scripts/rgw.sh start DIR [--port N] [--memory SIZE] [--bucket NAME]...
#   scripts/rgw.sh env DIR      # prints AWS_* lines for a client (sh: eval "$(scripts/rgw.sh env DIR)")
#   scripts/rgw.sh stop DIR     # stops every daemon of DIR and removes DIR
#
# Debian 12's Ceph 16.2 has no dbstore, so RGW sits on the smallest RADOS cluster there is:
# one mon with auth none, one OSD on memstore (objects in RAM, at most --memory, default 4GiB),
# pools of size 1 and no mgr. Everything lives in DIR: config, fsid, mon store, pid files,
# admin sockets and logs; nothing goes to /etc/ceph or systemd. The cluster's ports are its own
# (picked free unless --port is given), so several can run at once. `start` on a DIR whose
# cluster answers does nothing but print its endpoint; on a DIR whose cluster died, it starts a
# new one there (memstore kept nothing anyway). The packages come from install-system-deps.sh.
set -eu

ACCESS_KEY=STAGEFSRGWACCESSKEY0
SECRET_KEY=stagefs-rgw-secret-key-for-tests-and-bench
USER_ID=stagefs
REGION=us-east-1
PACKAGES="ceph-mon ceph-osd radosgw ceph-common curl"
START_TIMEOUT_S=90

die() {
  echo "rgw: $*" >&2
  exit 1
}

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

bytes_of() {
  case "$1" in
    *GiB) echo $(( ${1%GiB} * 1024 * 1024 * 1024 )) ;;
    *MiB) echo $(( ${1%MiB} * 1024 * 1024 )) ;;
    *[!0-9]*|'') die "--memory takes a size such as 4GiB or 512MiB, not '$1'" ;;
    *) echo "$1" ;;
  esac
}

alive() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

endpoint_of() {
  sed -n 's/^# endpoint //p' "$DIR/ceph.conf" 2>/dev/null
}

answers() {
  endpoint=$(endpoint_of)
  [ -n "$endpoint" ] && alive "$DIR/run/mon.a.pid" && alive "$DIR/run/osd.0.pid" && alive "$DIR/run/client.rgw.pid" &&
    curl -s -o /dev/null --max-time 2 "$endpoint/"
}

print_env() {
  endpoint=$(endpoint_of)
  [ -n "$endpoint" ] || die "no RGW in $DIR (start it first)"
  echo "AWS_ACCESS_KEY_ID=$ACCESS_KEY"
  echo "AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
  echo "AWS_REGION=$REGION"
  echo "AWS_ENDPOINT_URL_S3=$endpoint"
}

ceph_cli() {
  timeout 30 ceph -c "$DIR/ceph.conf" "$@"
}

wait_until() {
  what=$1
  shift
  deadline=$(( $(date +%s) + START_TIMEOUT_S ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$what did not happen within ${START_TIMEOUT_S}s; logs in $DIR/log"
    sleep 0.2
  done
}

stop() {
  [ -d "$DIR" ] || return 0
  # DIR is removed whole: refuse one that is neither empty nor made by this script.
  if [ ! -f "$DIR/ceph.conf" ] && [ -n "$(ls -A "$DIR")" ]; then
    die "$DIR holds no RGW of this script; not touching it"
  fi
  pids=""
  for pidfile in "$DIR"/run/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    # Only a daemon started from this DIR: a pid reused by another process is left alone.
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$DIR/ceph.conf"; then
      kill "$pid" 2>/dev/null || true
      pids="$pids $pid"
    fi
  done
  for _ in $(seq 50); do
    left=""
    for pid in $pids; do kill -0 "$pid" 2>/dev/null && left="$left $pid"; done
    [ -z "$left" ] && break
    sleep 0.2
  done
  for pid in $left; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
}

create_buckets() {
  endpoint=$(endpoint_of)
  for bucket in $BUCKETS; do
    # RGW wants x-amz-content-sha256, which curl 7.88 signs but does not add by itself.
    status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" "$endpoint/$bucket")
    [ "$status" = 200 ] || [ "$status" = 409 ] || die "could not create bucket $bucket (HTTP $status)"
  done
}

start() {
  answers || start_cluster
  create_buckets
  print_env
}

start_cluster() {
  missing=""
  for command in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool curl; do
    command -v "$command" >/dev/null 2>&1 || missing="$missing $command"
  done
  if [ -n "$missing" ]; then
    sh "$(dirname "$0")/install-system-deps.sh" $PACKAGES >&2 || die "missing:$missing (see above)"
  fi
  stop
  mkdir -p "$DIR/run" "$DIR/log" "$DIR/mon/a" "$DIR/osd/0" "$DIR/rgw"
  mon_port=$(free_port)
  rgw_port=${PORT:-$(free_port)}
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  endpoint="http://127.0.0.1:$rgw_port"
  cat >"$DIR/ceph.conf" <<EOF
# endpoint $endpoint
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$mon_port
public_addr = 127.0.0.1
ms_bind_msgr1 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = $DIR/run
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log
keyring = $DIR/keyring
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
# No debug logging kept in memory (Ceph's default formats every level-5 entry): the CPU is the
# clients'. RGW keeps level 1, its access log.
debug_ms = 0/0
debug_osd = 0/0
debug_objecter = 0/0
debug_rados = 0/0
debug_monc = 0/0
debug_auth = 0/0
debug_optracker = 0/0
debug_objclass = 0/0
debug_context = 0/0
debug_finisher = 0/0
debug_throttle = 0/0
debug_asok = 0/0
debug_perfcounter = 0/0
debug_rgw = 1/1
osd_enable_op_tracker = false

[mon]
# Commit map changes at once: every pool RGW makes at its start is a new osdmap.
paxos_propose_interval = 0.01
paxos_min_wait = 0.01
mon_data = $DIR/mon/\$id

[osd]
osd_data = $DIR/osd/\$id
osd_objectstore = memstore
memstore_device_bytes = $MEMORY

[client]
admin_socket =
log_file = $DIR/log/client.log
ms_mon_client_mode = crc
ms_client_mode = crc

[client.rgw]
pid_file = $DIR/run/client.rgw.pid
log_file = $DIR/log/rgw.log
rgw_data = $DIR/rgw
rgw_frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw_enable_usage_log = false
# Deleted and overwritten objects leave their tails for the garbage collector, which by default
# waits two hours: in a RAM-backed store, reclaim them within a minute.
rgw_gc_obj_min_wait = 30
rgw_gc_processor_period = 30
EOF
  conf="$DIR/ceph.conf"
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$DIR/monmap" >/dev/null
  ceph-mon -c "$conf" -i a 2>>"$DIR/log/mon.a.log"
  wait_until "the mon answering" ceph_cli mon stat
  ceph_cli osd new "$osd_uuid" 0 >/dev/null
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1 || die "ceph-osd --mkfs failed; see $DIR/log/osd.0.log"
  ceph-osd -c "$conf" -i 0 2>>"$DIR/log/osd.0.log"
  wait_until "the OSD coming up" sh -c "ceph -c '$conf' osd dump 2>/dev/null | grep -q '^osd.0 up'"
  radosgw -c "$conf" -n client.rgw 2>>"$DIR/log/rgw.log"
  timeout 60 radosgw-admin -c "$conf" user create --uid="$USER_ID" --display-name="$USER_ID" \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null || die "radosgw-admin user create failed; see $DIR/log"
  wait_until "RGW answering on $endpoint" curl -s -o /dev/null --max-time 2 "$endpoint/"
}

[ $# -ge 2 ] || usage
ACTION=$1
case "$2" in
  /*) DIR=$2 ;;
  *) DIR=$PWD/$2 ;;
esac
shift 2
PORT=""
MEMORY=$(bytes_of 4GiB)
BUCKETS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT=${2:?--port needs a number}; shift 2 ;;
    --memory) MEMORY=$(bytes_of "${2:?--memory needs a size}"); shift 2 ;;
    --bucket) BUCKETS="$BUCKETS ${2:?--bucket needs a name}"; shift 2 ;;
    *) echo "rgw: unknown option '$1'" >&2; usage ;;
  esac
done

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  *) usage ;;
esac
