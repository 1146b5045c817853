# daemons.sh - part of tools/testbed/testbed.sh, sourced by it (not run alone):
# the daemons of a test bed: their pid files and processes, readiness probes, start and stop.
# It uses the address plan, TB (the test bed directory), HERE, run, subst, msg and die of testbed.sh.

# daemon NAME -> pid file, config, log, process name
daemon_info() {
    local d=$1
    case $2 in
        nsd)         echo "$d/dns/nsd.pid $d/dns/nsd.conf $d/dns/nsd.log nsd" ;;
        nsd-refused) echo "$d/dns/nsd-refused.pid $d/dns/nsd-refused.conf $d/dns/nsd-refused.log nsd" ;;
        unbound)     echo "$d/dns/unbound.pid $d/dns/unbound.conf $d/dns/unbound.log unbound" ;;
        unbound-noval) echo "$d/dns/unbound-noval.pid $d/dns/unbound-noval.conf $d/dns/unbound-noval.log unbound" ;;
        dnsstrip)    echo "$d/dns/strip.pid $d/dns/strip.pid $d/dns/strip.log python3" ;;
        nginx)       echo "$d/nginx/nginx.pid $d/nginx/nginx.conf $d/nginx/error.log nginx" ;;
        # Postfix's master gets its config through the environment: it is recognised by its working
        # directory, the queue directory
        postfix)     echo "$d/postfix/spool/pid/master.pid cwd=$d/postfix/spool $d/postfix/maillog master" ;;
        smtp)        echo "$d/smtp/server.pid $d/smtp/server.pid $d/smtp/server.log python3" ;;
    esac
}

proc_state() {  # pid -> state letter ('' if gone)
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    s=${s##*) }
    echo "${s%% *}"
}

# pid of daemon NAME of DIR if it runs (checked: process name and its config path on its command line)
running_pid() {
    local d=$1 name=$2 pidf conf logf comm pid st
    read -r pidf conf logf comm < <(daemon_info "$d" "$name")
    [ -s "$pidf" ] || return 1
    pid=$(tr -dc 0-9 < "$pidf")
    [ -n "$pid" ] || return 1
    st=$(proc_state "$pid")
    [ -n "$st" ] && [ "$st" != Z ] || return 1
    case $(cat "/proc/$pid/comm" 2>/dev/null) in "$comm"*) ;; *) return 1 ;; esac   # nsd renames itself "nsd: xfrd"
    case $conf in
        cwd=*) [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "${conf#cwd=}" ] || return 1 ;;
        *)     tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$conf" || return 1 ;;
    esac
    echo "$pid"
}

# exited PID TENTHS: true once PID is gone (or a zombie), waiting at most TENTHS tenths of a second
exited() {
    local pid=$1 i st
    for ((i = 0; i <= $2; i++)); do
        st=$(proc_state "$pid")
        { [ -z "$st" ] || [ "$st" = Z ]; } && return 0
        [ "$i" -lt "$2" ] && sleep 0.1
    done
    return 1
}

stop_daemon() {
    local d=$1 name=$2 pid pidf
    pidf=$(daemon_info "$d" "$name"); pidf=${pidf%% *}
    if pid=$(running_pid "$d" "$name"); then
        kill -TERM "$pid" 2>/dev/null || true
        if ! exited "$pid" 100; then
            msg "$name (pid $pid) did not exit after SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        msg "stopped $name (pid $pid)"
    fi
    rm -f -- "$pidf"
}

postfix_children() {  # pids of the processes whose working directory is the Postfix queue of DIR
    find /proc -mindepth 2 -maxdepth 2 -name cwd -lname "$1/postfix/spool" -printf '%h\n' 2>/dev/null |
        sed -n 's|^/proc/\([0-9]*\)$|\1|p'
    return 0
}

probe_nsd() {
    [ "$(kdig @"$NSD_ADDR" -p "$DNS_PORT" +timeout=1 +retry=0 +norec +short SOA test. 2>/dev/null | awk '{print $3}')" = "$SERIAL" ]
}

probe_refused() {
    kdig @"$REFUSED_ADDR" -p "$DNS_PORT" +timeout=1 +retry=0 +norec SOA test. 2>/dev/null | grep -q 'status: REFUSED'
}

probe_unbound() {
    local out
    out=$(kdig @"$UNBOUND_ADDR" -p "$DNS_PORT" +timeout=1 +retry=0 +dnssec SOA test. 2>/dev/null) || return 1
    grep -q 'status: NOERROR' <<<"$out" && grep -q '^;; Flags:.* ad[; ]' <<<"$out" &&
        grep -q "SOA.*ns.test. hostmaster.test. $SERIAL " <<<"$out"
}

probe_dnsstrip() {  # nsd's signed answer, without its RRSIGs
    local out
    out=$(kdig @"$STRIP_ADDR" -p "$DNS_PORT" +timeout=1 +retry=0 +norec +dnssec SOA rrsigstrip.test. 2>/dev/null) || return 1
    grep -q 'status: NOERROR' <<<"$out" && grep -q "SOA.*ns.test. hostmaster.test. $SERIAL " <<<"$out" &&
        ! grep -q 'RRSIG' <<<"$out"
}

probe_unbound_noval() {  # answers from the zone, and without AD: it does not validate
    local out
    out=$(kdig @"$NOVAL_ADDR" -p "$DNS_PORT" +timeout=1 +retry=0 +dnssec SOA test. 2>/dev/null) || return 1
    grep -q 'status: NOERROR' <<<"$out" && ! grep -q '^;; Flags:.* ad[; ]' <<<"$out" &&
        grep -q "SOA.*ns.test. hostmaster.test. $SERIAL " <<<"$out"
}

probe_nginx() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 2 --cacert "$TB/pki/ca.pem" \
        --resolve "mta-sts.enforce.sts.test:$HTTPS_PORT:$NGINX_ADDR" \
        "https://mta-sts.enforce.sts.test:$HTTPS_PORT/.well-known/mta-sts.txt" 2>/dev/null)" = 200 ]
}

smtp_banner() {  # addr -> first line of its SMTP greeting ('' if none within 2 s)
    (
        exec 3<>"/dev/tcp/$1/$SMTP_PORT" || exit 0
        IFS= read -r -t 2 line <&3 || line=
        printf 'QUIT\r\n' >&3 || true
        printf '%s' "${line%$'\r'}"
    ) 2>/dev/null
}

probe_postfix() {
    [[ $(smtp_banner "$SMTP_DANE_ADDR") == "220 $PF_NAME_DANE "* ]] &&
        [[ $(smtp_banner "$SMTP_INSECURE_ADDR") == "220 $PF_NAME_INSECURE "* ]] &&
        [[ $(smtp_banner "$SMTP_STS_ADDR") == "220 $PF_NAME_STS "* ]]
}

probe_smtp() {
    [[ $(smtp_banner "${SCRIPTED[nostarttls]}") == "220 nostarttls."* ]] &&
        [[ $(smtp_banner "${SCRIPTED[greet421]}") == "421 "* ]]
}

# start_daemon NAME PROBE CMD...: launch (it daemonises), then poll PROBE for up to 10 s
start_daemon() {
    local name=$1 probe=$2; shift 2
    local pidf conf logf comm i pid
    read -r pidf conf logf comm < <(daemon_info "$TB" "$name")
    if ! "$@" >>"$SETUP_LOG" 2>&1; then
        if [ -s "$logf" ]; then tail -n 5 "$logf" >&2; else tail -n 5 "$SETUP_LOG" >&2; fi
        die "$name failed to start (command: $*); see its log $logf and $SETUP_LOG"
    fi
    for ((i = 0; i < 100; i++)); do
        if "$probe"; then
            pid=$(running_pid "$TB" "$name") ||
                die "$name answers, but the process of $pidf is not running: another server on its address? see $logf"
            msg "$name running (pid $pid)"
            return 0
        fi
        if [ -s "$pidf" ] && ! running_pid "$TB" "$name" >/dev/null; then
            tail -n 5 "$logf" >&2 2>/dev/null || true
            die "$name exited right after starting; see its log $logf"
        fi
        sleep 0.1
    done
    tail -n 5 "$logf" >&2 2>/dev/null || true
    die "$name did not answer within 10 s; see its log $logf"
}
