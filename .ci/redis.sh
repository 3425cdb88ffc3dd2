# Sourced by `.ci/run` and `.ci/redis-tests`: installs redis-server if missing, starts a
# throwaway instance on 127.0.0.1 on a free port with no persistence, and exports its URL as
# SEAWALL_REDIS_URL. `stop_redis` (also run on exit) stops it and removes its directory.

ensure_redis_server() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        return
    fi
    echo "redis-server not found: installing it from Debian's packages" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null; then
            sudo="sudo"
        else
            echo "error: redis-server is missing and this user cannot install packages (not root, no sudo)" >&2
            return 1
        fi
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
    command -v redis-server >/dev/null
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "error: no free port found on 127.0.0.1" >&2
    return 1
}

# The tests that need a server: `#[ignore = "needs redis-server"]`, found through SEAWALL_REDIS_URL.
REDIS_TEST_CMD=(cargo test -p seawall-keyed-lock -p seawall-cooldown --all-features -- --ignored)

REDIS_DIR=""
REDIS_PID=""

start_redis() {
    ensure_redis_server
    REDIS_DIR="$(mktemp -d)"
    local port
    for _ in 1 2 3; do
        port="$(free_port)"
        redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
            --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" --daemonize no &
        REDIS_PID=$!
        for _ in $(seq 1 50); do
            if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
                export SEAWALL_REDIS_URL="redis://127.0.0.1:$port/"
                echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on $SEAWALL_REDIS_URL (pid $REDIS_PID, no persistence)"
                return
            fi
            if ! kill -0 "$REDIS_PID" 2>/dev/null; then
                break # lost a race for the port: try another
            fi
            sleep 0.1
        done
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    done
    echo "error: redis-server did not start; its log:" >&2
    cat "$REDIS_DIR/redis.log" >&2 || true
    return 1
}

stop_redis() {
    if [ -n "$REDIS_PID" ]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=""
    fi
    if [ -n "$REDIS_DIR" ]; then
        rm -rf "$REDIS_DIR"
        REDIS_DIR=""
    fi
    unset SEAWALL_REDIS_URL
}
