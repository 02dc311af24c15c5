#!/usr/bin/env bash
# The image as a cluster would run it: builds deploy/Dockerfile (scripts/image),
# takes the image's root filesystem and runs its own beamlink from there
# (chroot, as the image's user 10001, through its entrypoint and tini) in a
# scripts/cluster beamlink namespace against 3 pods: it joins every pod,
# relays a POST into the pods' Phoenix.PubSub, and its doctor passes.
# Root only (namespaces, chroot, podman's storage); elsewhere it says
# "skipped: needs root" (ctest reports it skipped).
#   tests/image/image_test.sh BUILD_DIR
#   IMAGE_SKIP_BUILD=1 ... reuses the image the last run built
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?usage: image_test.sh BUILD_DIR}
if [[ $(id -u) -ne 0 ]] || ! ip netns list >/dev/null 2>&1; then
  echo "skipped: needs root and network namespaces"
  exit 0
fi

export IMAGE_WORK=${IMAGE_WORK:-$build/image}
export CLUSTER_PREFIX=${CLUSTER_PREFIX:-bi$$}
export CLUSTER_STATE=/tmp/beamlink-cluster-test-$CLUSTER_PREFIX
export CLUSTER_TICKTIME=10 CLUSTER_POLL_MS=1000 CLUSTER_PUBSUB=2:EWalletAPI.PubSub
tag=localhost/beamlink:test
rootfs=$(mktemp -d /tmp/beamlink-image-rootfs.XXXXXX)
log=$rootfs.log
bl_pid=

cleanup() {
  local rc=$?
  if [[ -n $bl_pid ]]; then
    kill -TERM "$bl_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$bl_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$bl_pid" 2>/dev/null || true
  fi
  "$src/scripts/cluster" down >/dev/null 2>&1 || true
  rm -rf "$rootfs"
  if ((rc != 0)) && [[ -f $log ]]; then
    echo "--- beamlink's output"
    cat "$log"
  fi
  rm -f "$log"
  exit $rc
}
trap cleanup EXIT
fail() {
  echo "image test: FAILED: $*" >&2
  exit 1
}
# Polls a command until it succeeds, at most $1 seconds.
wait_for() {
  local secs=$1
  shift
  local deadline=$((SECONDS + secs))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

if [[ ${IMAGE_SKIP_BUILD:-0} == 1 ]]; then  # iterating on this test: the last build
  echo "image test: using the image built before ($tag)"
else
  echo "image test: building the image"
  "$src/scripts/image" "$tag"
fi

echo "image test: its root filesystem"
mnt=$("$src/scripts/image" podman image mount "$tag")
cp -a "$mnt/." "$rootfs/"
"$src/scripts/image" podman image unmount "$tag" >/dev/null
[[ -x $rootfs/usr/local/bin/beamlink ]] || fail "the image has no /usr/local/bin/beamlink"
# What a container runtime provides: device nodes, /proc (mounted below,
# inside the namespace's own mount namespace), resolv.conf and hosts.
mkdir -p "$rootfs/dev" "$rootfs/proc" "$rootfs/etc"
for dev in null:1:3 zero:1:5 random:1:8 urandom:1:9; do
  IFS=: read -r name major minor <<<"$dev"
  mknod -m 666 "$rootfs/dev/$name" c "$major" "$minor"
done

echo "image test: a 3-pod cluster ($CLUSTER_PREFIX)"
"$src/scripts/cluster" up 3 >/dev/null
eval "$("$src/scripts/cluster" env | sed 's/^/export /')"
cp "/etc/netns/$BEAMLINK_NETNS/resolv.conf" "$rootfs/etc/resolv.conf"
printf '127.0.0.1 localhost\n' >"$rootfs/etc/hosts"
cookie=$(cat "$CLUSTER_COOKIE_FILE")

# The image's beamlink, run as the image runs it; $1... its arguments.
in_image() {
  ip netns exec "$BEAMLINK_NETNS" env -i \
    HOME=/home/beamlink PATH=/usr/local/bin:/bin \
    NODE_DNS="$NODE_DNS" NODE_HOST="$NODE_HOST" ERLANG_COOKIE="$cookie" \
    NET_TICKTIME=10 POLL_INTERVAL=1 PUBSUB=EWalletAPI.PubSub \
    ROOTFS="$rootfs" MOUNT="$(command -v mount)" CHROOT="$(command -v chroot)" \
    /bin/sh -c '"$MOUNT" -t proc proc "$ROOTFS/proc" &&
      exec "$CHROOT" --userspec=10001:10001 "$ROOTFS" "$@"' sh "$@"
}

echo "image test: beamlink run from the image"
in_image /usr/local/bin/tini -s -- /usr/local/bin/beamlink-entrypoint run --log-level info \
  >"$log" 2>&1 &
bl_pid=$!
wait_for 60 grep -q "is up" "$log" || fail "beamlink did not start"
IFS=, read -r -a ips <<<"$CLUSTER_POD_IPS"
((${#ips[@]} == 3)) || fail "expected 3 pods, got $CLUSTER_POD_IPS"
for ip in "${ips[@]}"; do
  wait_for 60 grep -q "connected to ewallet@$ip" "$log" || fail "not connected to ewallet@$ip"
done
for i in 1 2 3; do
  wait_for 60 sh -c "'$src/scripts/cluster' nodes $i --hidden | grep -qx 'beamlink@$NODE_HOST'" ||
    fail "pod $i does not list beamlink@$NODE_HOST in nodes(hidden)"
done
echo "image test: joined all 3 pods"

curl_ns() { ip netns exec "$BEAMLINK_NETNS" curl -sS --max-time 10 "$@"; }
post() {
  curl_ns -o /dev/null -w '%{http_code}' http://127.0.0.1:7070/v1/broadcast \
    --data-binary "{\"topic\":\"$1\",\"event\":\"new_msg\",\"payload\":{\"n\":$2}}"
}
queued() {
  curl_ns http://127.0.0.1:7070/metrics | awk '$1 == "beamlink_relay_messages_queued_total" {print $2}'
}
for i in 1 2 3; do
  [[ $("$src/scripts/cluster" pubsub "$i" 'subscribe("EWalletAPI.PubSub", "room:img")' | tail -1) == '{"$atom":"ok"}' ]] ||
    fail "pod $i could not subscribe"
done
# Ready once a probe is queued for every pod (each pod's pubsub known).
probe_reaches_all() {
  local before after
  before=$(queued)
  [[ $(post probe 0) == 202 ]] || return 1
  after=$(queued)
  (( ${after%.*} - ${before%.*} == 3 ))
}
wait_for 60 probe_reaches_all || fail "the relay never queued a probe for all 3 pods"
status=$(post room:img 1)
[[ $status == 202 ]] || fail "POST answered $status"
for i in 1 2 3; do
  got=$("$src/scripts/cluster" pubsub "$i" 'wait_count("EWalletAPI.PubSub", "room:img", 1, 10_000)' | tail -1)
  [[ $got == 1 ]] || fail "pod $i got the POST $got times"
done
echo "image test: a POST reached each pod's subscriber once"

doctor_out=$(in_image /usr/local/bin/beamlink doctor --timeout 5000) ||
  fail "doctor from the image failed: $doctor_out"
echo "image test: doctor passes"
echo "image test: ok"
