#!/usr/bin/env bash
# Installs Debian's Prometheus and Alertmanager (promtool, amtool) when missing.
# The rule tests and the end-to-end test need them; without root they are skipped
# with a message naming what is missing.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  echo "system-deps: ${need[*]} missing and no root: promtool/e2e tests will be skipped" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends keeps it small; the services are not started by tests' processes.
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the daemons on install where an init system runs; the tests start
# their own on free ports, so stop these if they came up.
for svc in prometheus prometheus-alertmanager; do
  (command -v systemctl >/dev/null && $sudo systemctl stop "$svc" 2>/dev/null) || true
  (command -v service >/dev/null && $sudo service "$svc" stop 2>/dev/null) || true
done
