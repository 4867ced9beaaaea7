#!/usr/bin/env bash
# The README's test command (and exactly what .ci/run runs): the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --tests
export PATH="$PWD/.venv/bin:$PATH"

echo "== one place attaches to Python: no Python::attach/with_gil/future_into_py outside gil.rs"
if grep -rnE "Python::(attach|with_gil)|future_into_py|allow_threads|\.detach\(" rust/python/src --include=*.rs | grep -v "^rust/python/src/gil.rs:"; then
    echo "found attach/detach calls outside rust/python/src/gil.rs" >&2
    exit 1
fi

echo "== cargo test"
cargo test --workspace --quiet

echo "== mypy --strict"
mypy
mypy examples

echo "== stubtest"
python -m mypy.stubtest boxlite._native

echo "== the release wheel (manylinux_2_28, checked by auditwheel) works on its own: fresh venv, no source tree"
scratch=$(mktemp -d)
bash scripts/build-wheel.sh "$scratch/dist"
python3 -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install -q "$scratch"/dist/boxlite-*.whl
cp examples/quickstart.py "$scratch/"
(cd "$scratch" && venv/bin/python quickstart.py "$scratch/home" >/dev/null)
"$scratch/venv/bin/python" -c "import boxlite._native as native; assert not hasattr(native, '_testing'), 'the release wheel carries the test hooks'"

echo "== the source distribution: pip builds it where cargo is, and says what is missing where not"
python3 -m venv "$scratch/no-rust"
if env -i HOME="$scratch" PATH=/usr/bin:/bin "$scratch/no-rust/bin/pip" install "$scratch"/dist/boxlite-*.tar.gz >"$scratch/no-rust.log" 2>&1; then
    echo "the source distribution installed without a Rust toolchain" >&2
    exit 1
fi
grep -q "building one from source needs a Rust toolchain" "$scratch/no-rust.log" || { cat "$scratch/no-rust.log" >&2; exit 1; }
python3 -m venv "$scratch/from-source"
# The crates.io dependencies compiled above are reused (same target directory); boxlite's own
# crates build again from the unpacked source distribution.
CARGO_TARGET_DIR="$PWD/target" "$scratch/from-source/bin/pip" install -q "$scratch"/dist/boxlite-*.tar.gz
(cd "$scratch" && from-source/bin/python quickstart.py "$scratch/home-from-source" >/dev/null)
rm -rf "$scratch"

echo "== benchmarks (quick; figures are not judged here)"
python -m benches --quick

echo "== pytest"
python -m pytest tests -q -p no:cacheprovider -rs

echo "== the suite again as an ordinary user, whose runtime is rootless"
bash scripts/rootless-tests.sh
