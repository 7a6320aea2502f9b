#!/usr/bin/env bash
# System packages the test suite needs; installs only what is missing (a warm machine pays nothing).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
updated=0
apt_install() {
  if [ "$updated" -eq 0 ]; then $SUDO apt-get update -qq; updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

# PostgreSQL: the integration tests start a throwaway cluster.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt_install postgresql
fi
# Prometheus: promtool checks the exported rule files, and a real server scrapes a platform.
# Debian's package would start (or try to start) a daemon of its own: policy-rc.d forbids it
# while installing, and on a machine running systemd it is stopped and disabled afterwards.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    added_policy=1
  fi
  apt_install prometheus || { [ "$added_policy" -eq 1 ] && $SUDO rm -f "$policy"; exit 1; }
  if [ "$added_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
# Chromium: the web console's end-to-end tests drive Debian's build through Playwright (whose
# own browser download, `playwright install`, is never used).
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium chromium-driver
fi
echo "system packages: ok"
