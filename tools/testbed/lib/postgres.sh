# postgres.sh - part of tools/testbed/testbed.sh, sourced by it (not run alone):
# the PostgreSQL server of the test bed, started only when asked (TB_PG=1: initdb alone takes 1.5-2.5 s on this
# 2-CPU machine under load; run in the background while the zones are signed, PostgreSQL still adds 0.5-1 s and
# about 1 s of CPU to a start, which the suites that do not use it should not pay). It holds the shared state of
# a fleet of mxsec hosts (state_backend = postgresql://...): one cluster in DIR/pg, run by an unprivileged system user
# (the server refuses to run as root), TCP on $PG_ADDR:$PG_PORT only; mxsec logs in as role $PG_ROLE to the
# database $PG_DB it owns, its password (random per start) checked by SCRAM and kept only in the passfile
# DIR/pg/pgpass. The superuser (named like the system user) logs in by peer on the socket in DIR/pg/run only.
# Files in DIR/pg: data/ (the cluster, its postgresql.conf and pg_hba.conf from conf/), run/ (socket),
# postgres.log, pgpass.
# It uses the address plan, TB (the test bed directory), HERE, run, subst, msg, die and proc_state of testbed.sh.

PG_ROLE=mxsec
PG_DB=mxsec
PG_URI=postgresql://$PG_ROLE@$PG_ADDR:$PG_PORT/$PG_DB
PG_OWN_USER=mxsec-testpg   # created when the system has no "postgres" user (Debian's, of the postgresql package)
PG_WAIT=30                 # seconds the server has to accept connections (pg_ctl start) or to exit (fast shutdown)

PG_US=0   # microseconds spent on PostgreSQL during start (pg_timed), reported in its last line
pg_timed() { local t=${EPOCHREALTIME/./}; "$@"; PG_US=$((PG_US + ${EPOCHREALTIME/./} - t)); }

# the bin directory of the newest PostgreSQL server installed (Debian: /usr/lib/postgresql/MAJOR/bin), or of the
# major version that created the cluster of DIR when it exists
pg_bin() {
    local d=${1:-} b
    if [ -n "$d" ] && [ -f "$d/pg/data/PG_VERSION" ]; then
        b=/usr/lib/postgresql/$(cat "$d/pg/data/PG_VERSION")/bin
    else
        b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5n | tail -n 1)
    fi
    [ -n "$b" ] && [ -x "$b/initdb" ] && [ -x "$b/pg_ctl" ] && [ -x "$b/psql" ] ||
        die "no PostgreSQL server installed (/usr/lib/postgresql/*/bin/initdb; tools/setup.sh installs postgresql)"
    echo "$b"
}

# the system user that runs the server: Debian's postgres, else $PG_OWN_USER (created once, no home, no shell)
pg_os_user() {
    if getent passwd postgres >/dev/null; then echo postgres; return; fi
    if ! getent passwd "$PG_OWN_USER" >/dev/null; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
            "$PG_OWN_USER" >>"$SETUP_LOG" 2>&1 || getent passwd "$PG_OWN_USER" >/dev/null ||
            die "could not create the system user $PG_OWN_USER that runs PostgreSQL; see $SETUP_LOG"
        msg "created system user $PG_OWN_USER (runs the test bed's PostgreSQL)"
    fi
    echo "$PG_OWN_USER"
}

# pid of the postmaster of DIR if it runs: the first line of its postmaster.pid, a process named postgres whose
# working directory is the data directory (the server changes to it; its command line may not name it)
pg_running_pid() {
    local data=$1/pg/data pid st
    [ -s "$data/postmaster.pid" ] || return 1
    pid=$(head -n 1 "$data/postmaster.pid" | tr -dc 0-9)
    [ -n "$pid" ] || return 1
    st=$(proc_state "$pid")
    [ -n "$st" ] && [ "$st" != Z ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ] || return 1
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$data" ] || return 1
    echo "$pid"
}

pg_processes() {  # pids of every process of the cluster of DIR (postmaster and backends: cwd = the data directory)
    find /proc -mindepth 2 -maxdepth 2 -name cwd -lname "$1/pg/data" -printf '%h\n' 2>/dev/null |
        sed -n 's|^/proc/\([0-9]*\)$|\1|p'
    return 0
}

# psql as mxsec sees the server: TCP, role $PG_ROLE, the password from the passfile only (-w: never a prompt); the
# caller's PG* variables (PGHOST, PGSSLMODE, ...) must not change what is tested
pg_psql_tcp() {  # DIR psql-args...
    local d=$1; shift
    env $(compgen -e | grep '^PG' | sed 's/^/-u /') PGPASSFILE="$d/pg/pgpass" PGCONNECT_TIMEOUT=2 \
        "$(pg_bin "$d")/psql" -X -w -q -v ON_ERROR_STOP=1 -d "$PG_URI" "$@"
}

pg_probe() {  # DIR: role $PG_ROLE logs in to $PG_DB over TCP with the passfile
    [ "$(pg_psql_tcp "$1" -At -c 'SELECT current_user || current_database()' 2>/dev/null)" = "$PG_ROLE$PG_DB" ]
}

# pg_init_begin: TB/pg laid out and initdb started in the background as the system user (it takes seconds, spent
# while the zones are signed); write_postgres waits for it
PG_INITDB_PID=
pg_init_begin() {
    local B=$TB/pg bin u
    bin=$(pg_bin)
    u=$(pg_os_user)
    # the socket path must fit in sun_path (107 bytes)
    [ ${#B} -le 80 ] || die "test bed directory too long for PostgreSQL's socket path ($B/run/.s.PGSQL.$PG_PORT)"
    mkdir -p "$B/run"
    chown "$u:" "$B" "$B/run"
    chmod 0755 "$B"
    chmod 0700 "$B/run"
    chmod go+x "$TB"
    runuser -u "$u" -- test -w "$B" ||
        die "user $u cannot reach $B: every parent directory of $TB must be searchable (chmod o+x)"
    # --no-sync: initdb does not wait for the new files to reach the disk (seconds saved); a cluster lost in a
    # machine crash is a test bed started again. The server itself runs with fsync on.
    runuser -u "$u" -- "$bin/initdb" -D "$B/data" -U "$u" --auth-local=peer --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C --no-sync --no-instructions </dev/null >"$B/initdb.log" 2>&1 &
    PG_INITDB_PID=$!
}

pg_init_abort() {  # a start that fails does not leave initdb writing into TB
    [ -n "$PG_INITDB_PID" ] || return 0
    kill -TERM "$PG_INITDB_PID" 2>/dev/null || true
    wait "$PG_INITDB_PID" 2>/dev/null || true
    PG_INITDB_PID=
}

# write_postgres: once initdb is done, the configuration of conf/ in the cluster, the passfile, env.sh's lines
write_postgres() {
    local B=$TB/pg bin u rc=0
    wait "$PG_INITDB_PID" || rc=$?
    PG_INITDB_PID=
    if [ "$rc" != 0 ]; then
        tail -n 20 "$B/initdb.log" >&2
        die "initdb failed (exit $rc; full output: $B/initdb.log)"
    fi
    bin=$(pg_bin "$TB")
    u=$(stat -c %U "$B/data")
    subst conf/postgresql.conf TB PG_ADDR PG_PORT > "$B/data/postgresql.conf"
    subst conf/pg_hba.conf TB PG_OS_USER="$u" PG_ROLE > "$B/data/pg_hba.conf"
    chown "$u:" "$B/data/postgresql.conf" "$B/data/pg_hba.conf"
    chmod 0600 "$B/data/postgresql.conf" "$B/data/pg_hba.conf"
    # hex: no character that the passfile (: and \) or SQL (') would need escaped
    PG_PASSWORD=$(openssl rand -hex 24)
    [ ${#PG_PASSWORD} = 48 ] || die "openssl rand failed"
    (umask 077; printf '%s:%s:%s:%s:%s\n' "$PG_ADDR" "$PG_PORT" "$PG_DB" "$PG_ROLE" "$PG_PASSWORD" > "$B/pgpass")
    subst conf/env-pg.sh TB_Q="$(printf %q "$TB")" PG_ADDR PG_PORT PG_ROLE PG_DB PG_URI PG_BIN_Q="$(printf %q "$bin")" \
        PG_OS_USER="$u" >> "$TB/env.sh"
}

# pg_start_server DIR: start the cluster of DIR (pg_ctl waits until it accepts connections), then wait until
# role $PG_ROLE can log in over TCP; with "init", first create the role and its database (first start)
pg_start_server() {
    local d=$1 init=${2:-} bin u pid i
    bin=$(pg_bin "$d")
    u=$(stat -c %U "$d/pg/data")
    # A postmaster that died (crash, SIGKILL) leaves its lock files (postmaster.pid, the socket's .lock), and the
    # server refuses to start while the pid in them is a process, which a zombie not yet reaped still is. They are
    # stale once no process of the cluster is left (its backends would still hold the old shared memory): then
    # they go, and the server recovers from its WAL as after a crash.
    if [ -f "$d/pg/data/postmaster.pid" ]; then
        pg_stop_server "$d"
        msg "postgres of $d had died without removing its lock files: removed, crash recovery at start"
        rm -f "$d/pg/data/postmaster.pid" "$d/pg/run/.s.PGSQL.$PG_PORT" "$d/pg/run/.s.PGSQL.$PG_PORT.lock"
    fi
    if ! runuser -u "$u" -- "$bin/pg_ctl" -D "$d/pg/data" -l "$d/pg/postgres.log" -w -t "$PG_WAIT" -s start \
            >>"$SETUP_LOG" 2>&1; then
        tail -n 5 "$d/pg/postgres.log" >&2 2>/dev/null || true
        die "postgres failed to start; see its log $d/pg/postgres.log and $SETUP_LOG"
    fi
    pid=$(pg_running_pid "$d") ||
        die "pg_ctl started postgres but no postmaster of $d/pg/data runs; see $d/pg/postgres.log"
    if [ "$init" = init ]; then
        # the password travels on stdin, not on a command line; stored as a SCRAM verifier (password_encryption)
        printf "CREATE ROLE %s LOGIN PASSWORD '%s';\nCREATE DATABASE %s OWNER %s;\n" \
            "$PG_ROLE" "$PG_PASSWORD" "$PG_DB" "$PG_ROLE" |
            runuser -u "$u" -- "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$d/pg/run" -p "$PG_PORT" -U "$u" -d postgres \
                >>"$SETUP_LOG" 2>&1 || die "could not create role and database $PG_ROLE in postgres; see $SETUP_LOG"
    fi
    for ((i = 0; i < 100; i++)); do
        if pg_probe "$d"; then
            msg "postgres running (pid $pid)"
            return 0
        fi
        pg_running_pid "$d" >/dev/null || die "postgres exited right after starting; see its log $d/pg/postgres.log"
        sleep 0.1
    done
    pg_psql_tcp "$d" -c 'SELECT 1' >&2 || true   # show why
    die "role $PG_ROLE cannot log in to postgres at $PG_URI with $d/pg/pgpass within 10 s; see $d/pg/postgres.log"
}

# pg_stop_server DIR: fast shutdown (what pg_ctl stop -m fast sends: sessions aborted, checkpoint, exit; the data
# is kept), sent by pid so that it also works when pg_ctl could not (stale pid file); then no process of the
# cluster is left
pg_stop_server() {
    local d=$1 pid i pids
    if pid=$(pg_running_pid "$d"); then
        kill -INT "$pid" 2>/dev/null || true
        if ! exited "$pid" $((PG_WAIT * 10)); then
            msg "postgres (pid $pid) did not exit within $PG_WAIT s after SIGINT (fast shutdown), sending SIGQUIT"
            kill -QUIT "$pid" 2>/dev/null || true
            sleep 2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        msg "stopped postgres (pid $pid)"
    fi
    # the postmaster waits for its backends before it exits; one left over (postmaster killed) would keep the
    # shared memory: end it
    for ((i = 0; i < 50; i++)); do
        pids=$(pg_processes "$d")
        [ -z "$pids" ] && break
        sleep 0.1
    done
    if [ -n "$pids" ]; then
        msg "postgres processes of $d still running: $(echo $pids); SIGKILL"
        kill -KILL $pids 2>/dev/null || true
    fi
    return 0
}
