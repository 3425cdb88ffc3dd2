# Sourced by `.ci/run` and `.ci/instructions`: installs what the instruction-count benchmark
# (benches/benches/instructions_*.rs) needs when it is missing: valgrind from Debian's packages and
# the gungraun-runner whose version matches the gungraun library in Cargo.lock. Without the runner
# even `cargo bench --workspace -- --test` fails, at that benchmark.

source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

ensure_gungraun() {
    if ! command -v valgrind >/dev/null 2>&1; then
        apt_install valgrind
    fi

    local version
    version=$(awk '/^name = "gungraun"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
    if [ -z "$version" ]; then
        echo "gungraun is not in Cargo.lock" >&2
        return 1
    fi
    if ! gungraun-runner --version 2>/dev/null | grep -qx "gungraun-runner $version"; then
        echo "installing gungraun-runner $version"
        cargo install --locked --quiet gungraun-runner --version "$version"
    fi
    # `cargo install` puts it in cargo's bin directory, which may not be on PATH.
    if ! command -v gungraun-runner >/dev/null 2>&1; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    gungraun-runner --version >/dev/null
}
