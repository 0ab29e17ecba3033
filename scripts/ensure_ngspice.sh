#!/usr/bin/env bash
# Make sure ngspice (the binary and the shared library PySpice loads) is installed.
# Installs Debian's packages when they are missing and we may; otherwise says how.
set -euo pipefail
have_lib() { ldconfig -p 2>/dev/null | grep -q 'libngspice\.so' || ls /usr/lib/*/libngspice.so* >/dev/null 2>&1; }
if command -v ngspice >/dev/null 2>&1 && have_lib; then
  exit 0
fi
packages="ngspice libngspice0-dev"
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO=none; fi
if [ "$SUDO" = none ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ngspice is missing and cannot be installed automatically here." >&2
  echo "Install it with your package manager, e.g.: sudo apt-get install -y $packages" >&2
  exit 1
fi
echo "installing $packages ..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q $packages >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q $packages >/dev/null; }
command -v ngspice >/dev/null 2>&1 && have_lib || { echo "ngspice install failed" >&2; exit 1; }
