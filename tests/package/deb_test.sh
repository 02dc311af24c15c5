#!/usr/bin/env bash
# The .deb as a user installs it: CPack makes it from BUILD_DIR (its Depends
# from dpkg-shlibdeps), mmdebstrap installs it with those dependencies into
# a fresh bookworm chroot, and that chroot's beamlink prints its version and
# pings a real erl node (the chroot shares this machine's network).
# Root only (chroot); elsewhere "skipped: needs root".
#   tests/package/deb_test.sh BUILD_DIR
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?usage: deb_test.sh BUILD_DIR}
if [[ $(id -u) -ne 0 ]]; then
  echo "skipped: needs root"
  exit 0
fi
for tool in cpack mmdebstrap dpkg-shlibdeps erl epmd; do
  command -v "$tool" >/dev/null || { echo "deb test: $tool is missing (scripts/setup)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/beamlink-deb-test.XXXXXX)
epmd_pid= erl_pid=
cleanup() {
  local rc=$?
  [[ -n $erl_pid ]] && kill -TERM "$erl_pid" 2>/dev/null || true
  [[ -n $epmd_pid ]] && kill -TERM "$epmd_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
fail() {
  echo "deb test: FAILED: $*" >&2
  exit 1
}

echo "deb test: cpack -G DEB"
(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/pkg" >/dev/null 2>&1) ||
  fail "cpack failed"
deb=$(ls "$work"/pkg/beamlink_*.deb)
echo "deb test: $(basename "$deb")"
depends=$(dpkg-deb -f "$deb" Depends)
echo "deb test: Depends: $depends"
for lib in libuv1 libc-ares2 libspdlog libfmt libnettle8 libstdc++6 libc6; do
  [[ $depends == *"$lib"* ]] || fail "Depends lacks $lib"
done
# Digests come from nettle (common/digest.hpp): nothing pulls OpenSSL in.
[[ $depends != *libssl* ]] || fail "Depends names libssl: $depends"
contents=$(dpkg-deb -c "$deb")
grep -q '/usr/bin/beamlink$' <<<"$contents" || fail "no /usr/bin/beamlink in the package"
grep -q '/usr/share/man/man1/beamlink.1' <<<"$contents" || fail "no man page in the package"

echo "deb test: installing it into a fresh bookworm chroot (mmdebstrap)"
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [[ -f $f ]] && grep -qs 'debian' "$f" && sources+=("$f")
done
((${#sources[@]})) || sources=("http://deb.debian.org/debian")
chroot_dir=$work/chroot
mmdebstrap --quiet --variant=apt --mode=root \
  --hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount \
  --include="$deb" bookworm "$chroot_dir" "${sources[@]}"
[[ -x $chroot_dir/usr/bin/beamlink ]] || fail "beamlink is not installed in the chroot"

version=$(chroot "$chroot_dir" /usr/bin/beamlink --version)
echo "deb test: $version"
[[ $version == "beamlink "*" (commit "*")" ]] || fail "--version printed '$version'"

# A node to ping: epmd and erl on a free port of this machine's loopback.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
epmd -port "$port" >/dev/null 2>&1 &
epmd_pid=$!
cookie=deb-test-cookie
ERL_EPMD_PORT=$port erl -noshell -noinput -name debt@127.0.0.1 -setcookie "$cookie" >/dev/null 2>&1 &
erl_pid=$!
for _ in $(seq 300); do  # 60 s at most
  epmd -port "$port" -names 2>/dev/null | grep -q '^name debt ' && break
  sleep 0.2
done
out=$(chroot "$chroot_dir" /usr/bin/env -i ERLANG_COOKIE="$cookie" ERL_EPMD_PORT="$port" \
  NODE_HOST=127.0.0.1 /usr/bin/beamlink ping debt@127.0.0.1 2>&1) || fail "ping: $out"
echo "deb test: $out"
[[ $out == "pong from debt@127.0.0.1"* ]] || fail "ping printed '$out'"
echo "deb test: ok"
