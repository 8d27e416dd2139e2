#!/usr/bin/env bash
# Make sure the machine has what the scripts cannot fetch themselves: Java 17+ (Kafka 4) and Maven (to fetch
# the Kafka jars). Installs Debian's packages with apt-get only when one is missing; silent when all is there.
set -euo pipefail

say() { echo "prereqs: $*" >&2; }
need=()

java_major() {
  local java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  command -v "$java" >/dev/null 2>&1 || { echo 0; return; }
  "$java" -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}

[ "$(java_major)" -ge 17 ] 2>/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  say "missing ${need[*]} and no apt-get here: install Java 17+ and Maven, then retry"
  exit 1
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
say "installing ${need[*]} (apt-get) ..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq "${need[@]}" >/dev/null
say "installed: java $(java_major), $(mvn -v 2>/dev/null | head -n 1)"
