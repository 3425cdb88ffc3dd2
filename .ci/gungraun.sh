# Sourced by `.ci/run` and `.ci/instructions`: installs what the instruction-count benchmark
# (benches/benches/instructions_*.rs) needs when it is missing: valgrind from Debian's packages and
# the gungraun-runner whose version matches the gungraun library in Cargo.lock. Without the runner
# even `cargo bench --workspace -- --test` fails, at that benchmark.

ensure_gungraun() {
    if ! command -v valgrind >/dev/null 2>&1; then
        echo "installing valgrind from Debian's packages"
        local sudo=""
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null; then
                sudo="sudo"
            else
                echo "error: valgrind is missing and this user cannot install packages (not root, no sudo)" >&2
                return 1
            fi
        fi
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq valgrind >/dev/null
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
