#!/usr/bin/env bash
# Install the Debian packages listed in system-packages.txt that are missing (root or sudo needed
# only when something is missing). Safe to run again: it does nothing when all are present.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' system-packages.txt)
missing=()
for line in "${wanted[@]}"; do
  line=$(echo "$line" | xargs)
  if [[ $line == cmd:* ]]; then
    read -r cmd pkgs <<<"${line#cmd:}"
    if ! command -v "$cmd" >/dev/null 2>&1; then
      read -r -a more <<<"$pkgs"
      missing+=("${more[@]}")
    fi
    continue
  fi
  dpkg-query -W -f='${Status}' "$line" 2>/dev/null | grep -q "install ok installed" || missing+=("$line")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-get not found: install these packages with your system's package manager: ${missing[*]}" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
