#!/usr/bin/env bash
# Runs the test suite as an ordinary user, whose runtime is then rootless, from a venv made from
# the wheel (with the suite's test hooks), outside the source tree. Run as root (scripts/test.sh
# does, after the suite's run as root), which prepares what an administrator would:
#   - the user, `boxlite-ci` (made if missing), with subordinate ids (/etc/subuid, /etc/subgid);
#   - a cgroup delegated to it in each hierarchy, named in BOXLITE_CGROUP_PARENT, so limits work
#     and a running box can be frozen (snapshots, clones, archives); and a second one in every
#     hierarchy but the freezer's, for the test of a host that gives boxes no freezer;
#   - the fake internet the network tests reach, which only root can build
#     (`python -m tests.fake_internet --serve`), named in BOXLITE_TEST_INTERNET.
# Tests about what only a root runtime does are skipped, each saying why (-rs lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
user=boxlite-ci
cgroup=/boxlite-ci

id -u "$user" >/dev/null 2>&1 || useradd -m "$user"
grep -q "^$user:" /etc/subuid || usermod --add-subuids 100000-165535 "$user"
grep -q "^$user:" /etc/subgid || usermod --add-subgids 100000-165535 "$user"
scratch=$(mktemp -d)
chmod 755 "$scratch"
internet_pid=""
cleanup() {
    # Everything is undone, whatever fails on the way.
    set +e
    [ -n "$internet_pid" ] && kill "$internet_pid" 2>/dev/null && wait "$internet_pid" 2>/dev/null
    for hierarchy in /sys/fs/cgroup/*/; do
        for group in "${cgroup#/}" "${cgroup#/}-nofreezer"; do
            [ -d "$hierarchy$group" ] && find "$hierarchy$group" -depth -type d -exec rmdir {} + 2>/dev/null
        done
    done
    rm -rf "$scratch"
}
trap cleanup EXIT

echo "== the wheel, with the test hooks, into a venv of $user's"
maturin build --release --quiet --features testing --out "$scratch/dist" 2>&1 | grep -v "^📦\|^🔗\|^🐍\|Built wheel\|build-backend. in pyproject.toml is not set" || true
mkdir "$scratch/repo"
git ls-files -z | xargs -0 cp --parents -t "$scratch/repo"
chown -R "$user:" "$scratch"
# Before the fake internet: it routes TEST-NET addresses (where package mirrors may live) to itself.
su "$user" -c "/usr/bin/python3 -m venv '$scratch/venv' && '$scratch/venv/bin/pip' install -q '$scratch'/dist/boxlite-*.whl pytest pytest-asyncio pytest-timeout websockets h2 schemathesis==4.32.5 matplotlib 'ray>=2.60'"

echo "== cgroups delegated to $user ($cgroup in every hierarchy, $cgroup-nofreezer in all but the freezer's)"
for hierarchy in /sys/fs/cgroup/memory /sys/fs/cgroup/cpu /sys/fs/cgroup/cpuacct /sys/fs/cgroup/pids /sys/fs/cgroup/freezer; do
    [ -d "$hierarchy" ] || continue
    groups=("$cgroup")
    [ "$hierarchy" = /sys/fs/cgroup/freezer ] || groups+=("$cgroup-nofreezer")
    for group in "${groups[@]}"; do
        mkdir -p "$hierarchy$group"
        chown -R "$user:" "$hierarchy$group"
    done
done

echo "== the fake internet, served by root"
.venv/bin/python -m tests.fake_internet --serve "$scratch/internet" &
internet_pid=$!
for _ in $(seq 300); do [ -e "$scratch/internet/ready" ] && break; sleep 0.1; done
[ -e "$scratch/internet/ready" ] || { echo "the fake internet did not start" >&2; exit 1; }

environment="BOXLITE_CGROUP_PARENT=$cgroup BOXLITE_TEST_CGROUP_PARENT_WITHOUT_FREEZER=$cgroup-nofreezer BOXLITE_TEST_INTERNET=$scratch/internet"
echo "== benchmarks as $user (quick; figures are not judged here)"
su "$user" -c "cd '$scratch/repo' && $environment '$scratch/venv/bin/python' -m benches --quick --only exec,create --out '$scratch/bench'"
echo "== pytest as $user"
su "$user" -c "cd '$scratch/repo' && $environment '$scratch/venv/bin/python' -m pytest tests -q -p no:cacheprovider -rs"
