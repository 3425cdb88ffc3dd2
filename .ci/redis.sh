# Sourced by `.ci/run` and `.ci/redis-tests`: installs redis-server if missing, starts a
# throwaway instance on 127.0.0.1 on a free port with no persistence, and exports its URL as
# SEAWALL_REDIS_URL. `stop_redis` (also run on exit) stops it and removes its directory.

source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

ensure_redis_server() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        return
    fi
    apt_install redis-server
    command -v redis-server >/dev/null
}

port_is_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A TCP port on 127.0.0.1 that nothing listens on right now, and neither on the port 10000
# above it (a cluster node's bus port).
free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 35000))
        if port_is_free "$port" && port_is_free $((port + 10000)); then
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
CLUSTER_PIDS=()

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

# A three-node Redis Cluster (three masters, no replicas, no persistence) on free ports, in
# REDIS_DIR; exports SEAWALL_REDIS_CLUSTER_URLS (comma-separated node URLs). Call after
# start_redis.
start_redis_cluster() {
    local ports=() port dir pid up
    for _ in 1 2 3; do
        # Each node on its own free port; a node that does not answer (it lost a race for its
        # port or its bus port) is stopped and started again on another.
        up=""
        for _ in 1 2 3; do
            port="$(free_port)"
            dir="$REDIS_DIR/cluster-$port"
            mkdir -p "$dir"
            redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
                --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
                --dir "$dir" --logfile "$dir/redis.log" --daemonize no &
            pid=$!
            for _ in $(seq 1 50); do
                if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
                    up=yes
                    break
                fi
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if [ -n "$up" ]; then
                CLUSTER_PIDS+=("$pid")
                ports+=("$port")
                break
            fi
            echo "cluster node on port $port did not start; its log:" >&2
            cat "$dir/redis.log" >&2 || true
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done
        if [ -z "$up" ]; then
            echo "error: a cluster node did not start in three tries" >&2
            return 1
        fi
    done
    local nodes=()
    for port in "${ports[@]}"; do nodes+=("127.0.0.1:$port"); done
    if ! redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$REDIS_DIR/cluster-create.log" 2>&1; then
        echo "error: redis-cli --cluster create failed:" >&2
        cat "$REDIS_DIR/cluster-create.log" >&2
        return 1
    fi
    for port in "${ports[@]}"; do
        for _ in $(seq 1 100); do
            redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
            sleep 0.1
        done
        if ! redis-cli -h 127.0.0.1 -p "$port" cluster info | grep -q 'cluster_state:ok'; then
            echo "error: cluster node 127.0.0.1:$port is not ready" >&2
            return 1
        fi
    done
    local urls=()
    for port in "${ports[@]}"; do urls+=("redis://127.0.0.1:$port/"); done
    SEAWALL_REDIS_CLUSTER_URLS="$(IFS=,; echo "${urls[*]}")"
    export SEAWALL_REDIS_CLUSTER_URLS
    echo "redis cluster of 3 masters on $SEAWALL_REDIS_CLUSTER_URLS"
}

stop_redis() {
    local pid
    for pid in "${CLUSTER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    CLUSTER_PIDS=()
    unset SEAWALL_REDIS_CLUSTER_URLS
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
