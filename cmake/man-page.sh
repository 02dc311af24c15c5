#!/bin/sh
# Writes beamlink's man page from the binary's own help: help2man for the
# top level (--help, --version), and each subcommand's --help as a section.
#   cmake/man-page.sh BEAMLINK OUT.1
set -eu
bin=$1
out=$2
inc=$(mktemp)
trap 'rm -f "$inc"' EXIT
# roff: a leading '.' or "'" would be a request; a backslash an escape.
as_roff() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }
{
  echo '[SUBCOMMANDS]'
  "$bin" --help | awk '/^Subcommands:/ { on = 1; next } on && NF { print $1 }' |
    while read -r sub; do
      echo ".SS $sub"
      echo '.nf'
      "$bin" "$sub" --help | as_roff
      echo '.fi'
    done
  cat <<'TEXT'
[CONFIGURATION]
Every subcommand reads the same configuration. A flag on the command line
wins, then the environment variable, then the default: NODE_HOST (\-\-host),
NODE_NAME (\-\-name), PEER_NAME, ERLANG_COOKIE (\-\-cookie\-file),
ERL_EPMD_PORT (\-\-epmd\-port), DIST_PORT_MIN/DIST_PORT_MAX (\-\-dist\-ports),
NET_TICKTIME (\-\-ticktime), LOG_LEVEL, LOG_FORMAT (text or json), NODE_DNS,
POLL_INTERVAL, PUBSUB, PG_SCOPE and the relay's RELAY_* variables.
\-\-print\-config prints the effective configuration (never the cookie).
[EXIT STATUS]
0 success, 1 the operation failed (the reason on stderr), 2 bad usage or
configuration.
TEXT
} >"$inc"
LC_ALL=C.UTF-8 help2man --locale=C.UTF-8 --no-info --no-discard-stderr \
  --name 'a C++ peer for BEAM (Erlang/Elixir) clusters' \
  --include "$inc" --output "$out" "$bin"
