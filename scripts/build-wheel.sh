#!/usr/bin/env bash
# Builds the release wheel and the source distribution into DIR (default: dist/):
# `boxlite-<version>-cp310-abi3-manylinux_2_28_x86_64.whl`, linked by zig against glibc 2.28
# so pip takes it on every Linux x86_64 with glibc 2.28 or newer (Debian 10+, Ubuntu 18.10+,
# RHEL/Rocky 8+), then checked by auditwheel: no symbol newer than the tag allows and no shared
# library outside the policy's list. The box's init inside the extension is a static executable
# (rust/core/build.rs) and needs no glibc at all. Needs the tools bootstrap.sh installs (maturin,
# ziglang, auditwheel).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
policy=manylinux_2_28
mkdir -p "$out"
rm -f "$out"/boxlite-*.whl "$out"/boxlite-*.tar.gz

maturin build --release --zig --compatibility "$policy" --out "$out" --quiet 2>&1 \
    | grep -v "^📦\|^🔗\|^🐍\|^🍹\|^📡\|^🛠️\|Built wheel\|build-backend. in pyproject.toml is not set" || true
maturin sdist --out "$out" 2>&1 | grep -v "build-backend. in pyproject.toml is not set\|^📦\|^🔗\|^🍹\|^📡\|^From \|warning: manifest has no\|^  |\|= note" || true

wheel=$(ls "$out"/boxlite-*-"$policy"_x86_64.whl)
report=$(auditwheel show "$wheel")
tag=$(printf '%s\n' "$report" | tr '\n' ' ' | grep -oE 'following platform tag: +"[a-z0-9_]+"' | grep -oE '"[a-z0-9_]+"' | tr -d '"')
case "$tag" in
    manylinux_2_[0-9]_x86_64 | manylinux_2_1[0-9]_x86_64 | manylinux_2_2[0-8]_x86_64) ;;
    *)
        printf '%s\n' "$report" >&2
        echo "auditwheel places $wheel at '$tag', not within $policy" >&2
        exit 1
        ;;
esac
echo "$wheel: auditwheel: $tag"
ls "$out"/boxlite-*.tar.gz
