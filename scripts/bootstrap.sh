#!/usr/bin/env bash
# Installs what boxlite needs on a fresh Debian 12 machine (as root) and builds it into .venv:
# Debian packages with apt-get, Python packages with pip, crates with cargo (through maturin).
# Idempotent; every other script starts by running it.
set -euo pipefail
cd "$(dirname "$0")/.."

# nftables lets the tests read boxes' network rules (the runtime itself needs no package);
# iproute2 builds the tests' fake internet; busybox-static, docker-registry, zstd and
# apache2-utils (htpasswd) build and serve the test images; bubblewrap, crun and skopeo are the
# peers the benchmarks measure against; python3-venv makes the venv the suite runs from as an
# ordinary user; btrfs-progs formats the filesystem with reflinks a snapshot test runs on.
debian_packages=(nftables iproute2 busybox-static docker-registry zstd apache2-utils bubblewrap crun skopeo python3-venv btrfs-progs)
# With --tests (scripts/test.sh): what the specialised boxes' tests run in the host:// image, a
# browser (chromium), an X server (TigerVNC's Xvnc) and the tools a ComputerBox drives it with
# (xdotool, xwd from x11-apps); curl, which the secrets' tests send HTTPS with from a box; and
# openssl, which makes the fake internet's certificates; uidmap (newuidmap, newgidmap), which maps
# the subordinate ids of the ordinary user the suite also runs as.
if [ "${1:-}" = "--tests" ]; then
    debian_packages+=(chromium tigervnc-standalone-server xdotool x11-apps curl openssl uidmap)
fi
missing=()
for package in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# ziglang and auditwheel build and check the release wheel (scripts/build-wheel.sh).
.venv/bin/python -m pip install -q "maturin>=1.5,<2" "ziglang==0.17.1" auditwheel pytest pytest-asyncio pytest-timeout websockets h2 "schemathesis==4.32.5" mypy typing_extensions matplotlib "ray>=2.60"

echo "== building and installing boxlite (release, with the test suite's hooks: cargo feature testing)"
MATURIN_PEP517_ARGS="--features testing" .venv/bin/python -m pip install -q --force-reinstall --no-deps .
