# Sourced by `.ci/fleet`: a throwaway PostgreSQL and a throwaway Redis on 127.0.0.1, each on a
# free port, installed from Debian's packages if missing. `start_services` exports
#
#   SEAWALL_POSTGRES_URL   postgres://seawall@127.0.0.1:PORT/postgres (trust auth, fsync off)
#   SEAWALL_REDIS_URL      redis://127.0.0.1:PORT/ (no persistence)
#   SEAWALL_SERVICES_CTL   a directory of scripts a scenario runs to break things:
#                          pg-stop, pg-start, redis-restart
#
# and `stop_services` (also run on exit) stops both and removes their directories.
# PostgreSQL refuses to run as root: as root, the server runs as the system user `seawall`
# (created if missing); otherwise as the current user.

source "$(dirname "${BASH_SOURCE[0]}")/redis.sh"

SERVICES_DIR=""
PG_BIN=""
PG_DATA=""
PG_AS=()

# Installs Debian's packages for what is missing (apt-get update first).
ensure_packages() {
    local missing=()
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server)
    [ "${#missing[@]}" -eq 0 ] && return
    apt_install "${missing[@]}"
}

# The user the PostgreSQL server runs as: `seawall` when we are root (created if missing).
pg_user() {
    if [ "$(id -u)" -ne 0 ]; then
        PG_AS=()
        return
    fi
    if ! id seawall >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin seawall
    fi
    PG_AS=(runuser -u seawall --)
}

start_postgres() {
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    pg_user
    PG_DATA="$SERVICES_DIR/pg"
    mkdir -p "$PG_DATA"
    if [ "${#PG_AS[@]}" -gt 0 ]; then
        chown -R seawall "$SERVICES_DIR"
        chmod 755 "$SERVICES_DIR"
    fi
    if ! "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DATA/data" -U seawall --auth=trust \
        -E UTF8 --no-locale >"$SERVICES_DIR/initdb.log" 2>&1; then
        echo "error: initdb failed:" >&2
        cat "$SERVICES_DIR/initdb.log" >&2
        return 1
    fi
    local port
    port="$(free_port)"
    cat >"$SERVICES_DIR/pg-start" <<EOF
#!/usr/bin/env bash
# Starts the throwaway PostgreSQL (again) on port $port and waits until it accepts connections.
exec ${PG_AS[*]} "$PG_BIN/pg_ctl" -D "$PG_DATA/data" -l "$PG_DATA/server.log" -w -t 30 \\
    -o "-p $port -k $PG_DATA -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \\
    start >/dev/null
EOF
    cat >"$SERVICES_DIR/pg-stop" <<EOF
#!/usr/bin/env bash
# Stops the throwaway PostgreSQL (fast: open connections are cut).
exec ${PG_AS[*]} "$PG_BIN/pg_ctl" -D "$PG_DATA/data" -m fast -w -t 30 stop >/dev/null
EOF
    chmod +x "$SERVICES_DIR/pg-start" "$SERVICES_DIR/pg-stop"
    if ! bash "$SERVICES_DIR/pg-start"; then
        echo "error: PostgreSQL did not start; its log:" >&2
        cat "$PG_DATA/server.log" >&2 || true
        return 1
    fi
    export SEAWALL_POSTGRES_URL="postgres://seawall@127.0.0.1:$port/postgres"
    echo "postgresql $("$PG_BIN/postgres" --version | awk '{print $3}') on $SEAWALL_POSTGRES_URL (data in $PG_DATA, fsync off)"
}

# A restart of the Redis that start_redis started, on the same port, with its lost state.
write_redis_ctl() {
    local port="${SEAWALL_REDIS_URL#redis://127.0.0.1:}"
    port="${port%/}"
    cat >"$SERVICES_DIR/redis-restart" <<EOF
#!/usr/bin/env bash
# Restarts the throwaway Redis on port $port: everything it held (leases, cooldowns) is lost.
redis-cli -h 127.0.0.1 -p $port shutdown nosave >/dev/null 2>&1 || true
for _ in \$(seq 1 50); do
    redis-cli -h 127.0.0.1 -p $port ping >/dev/null 2>&1 || break
    sleep 0.1
done
sleep \${1:-0}
redis-server --bind 127.0.0.1 --port $port --save '' --appendonly no --dir "$REDIS_DIR" \\
    --logfile "$REDIS_DIR/redis.log" --daemonize yes --pidfile "$SERVICES_DIR/redis.pid" >/dev/null
for _ in \$(seq 1 50); do
    redis-cli -h 127.0.0.1 -p $port ping 2>/dev/null | grep -q PONG && exit 0
    sleep 0.1
done
echo "error: redis-server did not come back on port $port" >&2
exit 1
EOF
    chmod +x "$SERVICES_DIR/redis-restart"
}

start_services() {
    ensure_packages
    SERVICES_DIR="$(mktemp -d)"
    export SEAWALL_SERVICES_CTL="$SERVICES_DIR"
    start_redis
    write_redis_ctl
    start_postgres
}

stop_services() {
    if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/data/postmaster.pid" ]; then
        "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
    fi
    PG_DATA=""
    if [ -n "$SERVICES_DIR" ] && [ -f "$SERVICES_DIR/redis.pid" ]; then
        local pid
        pid="$(cat "$SERVICES_DIR/redis.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    stop_redis
    if [ -n "$SERVICES_DIR" ]; then
        # A server that was just stopped may still be removing its files: try again once.
        rm -rf "$SERVICES_DIR" 2>/dev/null || { sleep 1; rm -rf "$SERVICES_DIR" || true; }
        SERVICES_DIR=""
    fi
    unset SEAWALL_POSTGRES_URL SEAWALL_SERVICES_CTL
}
