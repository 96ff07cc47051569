#!/usr/bin/env bash
# System packages the tests need that pip cannot install: Debian's chromium, which the report's
# browser test drives through Playwright (never `playwright install`: no browser download).
# Installs only what is missing; `apt-get update` runs once, before the first install; a failed
# install stops CI here with a message instead of skipping tests later.
set -euo pipefail
PACKAGES=(chromium)          # package names, checked by the file each one provides below
PROVIDES=(/usr/bin/chromium)

missing=()
for i in "${!PACKAGES[@]}"; do
  [ -e "${PROVIDES[$i]}" ] || missing+=("${PACKAGES[$i]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "ci-deps: installing ${missing[*]}" >&2
if ! $SUDO apt-get update -qq; then
  echo "ci-deps: apt-get update failed; cannot install ${missing[*]}" >&2
  exit 1
fi
if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
  echo "ci-deps: apt-get install ${missing[*]} failed" >&2
  exit 1
fi
