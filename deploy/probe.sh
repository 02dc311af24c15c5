#!/bin/bash
# A probe for the relay: GET PATH (/readyz or /healthz) on the relay's own
# port with the bearer token (kubelet's httpGet cannot take a header from a
# Secret); exit 0 on 200. bash's /dev/tcp: the image needs no HTTP client.
#   beamlink-probe [PATH] [PORT]   (defaults: /readyz, the port of RELAY_LISTEN, else 7070)
set -u
path=${1:-/readyz}
listen=${RELAY_LISTEN:-127.0.0.1:7070}
port=${2:-${listen##*:}}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n' \
  "$path" "${RELAY_TOKEN:-}" >&3
read -r -t 5 _ status _ <&3 || exit 1
[[ $status == 200 ]]
