#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine (Python 3.11+), then run the whole suite.
# Debian packages are installed only when missing; the Python packages go into .venv beside this project.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] || missing+=("$2"); }
need sshd openssh-server
need ssh openssh-client
need mkswap util-linux
need mkfs.ext4 e2fsprogs
need genisoimage genisoimage
need tmux tmux
need pgrep procps
need ip iproute2
need dnsmasq dnsmasq-base
need dhcp_release dnsmasq-utils
need dhclient isc-dhcp-client
need busybox busybox
need kea-dhcp4 kea-dhcp4-server
need kea-dhcp6 kea-dhcp6-server
need tc iproute2
need zstd zstd
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Two runs on a fresh machine would race for apt's locks: take turns, and wait for any other apt user.
  apt() { $sudo flock /var/lock/headnode-tests-apt.lock apt-get -o DPkg::Lock::Timeout=600 "$@"; }
  apt update -qq
  DEBIAN_FRONTEND=noninteractive apt install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/lint-imports --no-cache >/dev/null || { .venv/bin/lint-imports --no-cache; exit 1; }
.venv/bin/mypy >/dev/null || { .venv/bin/mypy; exit 1; }
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
