#!/bin/sh
# Starts epmd when none answers on ERL_EPMD_PORT (a pod of its own needs one;
# as a sidecar beamlink shares the eWallet container's epmd), then beamlink.
set -e
port=${ERL_EPMD_PORT:-4369}
if ! epmd -port "$port" -names >/dev/null 2>&1; then
  epmd -port "$port" -daemon
fi
exec /usr/local/bin/beamlink "$@"
