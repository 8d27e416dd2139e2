#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is installed (for the run-page browser test), installing it if absent.
# Tries the install first and refreshes the package lists only when that fails (a fresh CI machine).
# Prints the browser path on stdout: CHROMIUM=/usr/bin/chromium
set -euo pipefail

BIN="${APEV_CHROMIUM:-/usr/bin/chromium}"
say() { echo "chromium: $*" >&2; }

if [ ! -x "$BIN" ]; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  say "not installed; installing Debian's chromium (apt-get) ..."
  if ! $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
    say "install failed; running apt-get update and trying again"
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
fi
[ -x "$BIN" ] || { say "$BIN is still missing after the install"; exit 1; }
echo "CHROMIUM=$BIN"
