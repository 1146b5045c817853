#!/bin/bash
# testbed.sh - loopback test bed for mxsec (DANE, RFC 7672 + MTA-STS, RFC 8461).
#
# Usage:
#   testbed.sh start  DIR               build DIR from scratch and start every daemon
#                                       (a test bed already running in DIR is stopped first)
#   testbed.sh stop   DIR               stop the daemons of DIR by their pid files (no error if none run)
#   testbed.sh status DIR               exit 0 iff every daemon of DIR runs
#   testbed.sh set-txt DIR OWNER VALUE  replace the TXT RRset of OWNER (a name in sts.test, e.g.
#                                       _mta-sts.idchange.sts.test) by one record VALUE; nsd reloads,
#                                       unbound's cache for sts.test is flushed: the next query sees it
#   testbed.sh del-txt DIR OWNER        remove the TXT RRset of OWNER (in sts.test), same reload/flush
#   TB_BULK=N testbed.sh start DIR      also create N benchmark domains bK.dane.test (DANE-EE) and
#                                       bK.sts.test (MTA-STS enforce), K = 1..N (tools/bench)
#   TB_PG=1 testbed.sh start DIR        also run PostgreSQL (mxsec's state_backend for a fleet; DIR/pg)
#   testbed.sh pg-stop  DIR             stop that PostgreSQL (fast shutdown), its data kept
#   testbed.sh pg-start DIR             start it again on the same data; returns once mxsec's role logs in
#
# What it is: real servers on 127.0.0.0/8, nothing faked, nothing outside DIR (pid files, logs, keys, zones,
# temp paths, mail; needs root for ports 25/53/443; DIR gets mode go+x for Postfix's unprivileged processes):
#   - nsd, authoritative for test. and its children, signed at every start with fresh keys; a second nsd that
#     answers REFUSED (lame delegations) but serves rrsigstrip.test to dns_strip_proxy.py, which deletes RRSIGs
#   - unbound, validating (trust anchor: DS of test.), mxsec's resolver; a second unbound that does not validate
#   - nginx serving the MTA-STS policies DIR/www/<domain>/.well-known/mta-sts.txt (private CA DIR/pki/ca.pem)
#   - Postfix, a private instance, the honest receiving MTA: three smtpd listeners, one catch-all Maildir
#   - smtp_server.py: scripted SMTP servers, one behaviour per address, each accepted message kept as JSON
#   - with TB_PG=1, PostgreSQL: role and database mxsec, password in the passfile DIR/pg/pgpass (lib/postgres.sh)
# tools/testbed/README says what each one does in detail, the address plan, and every domain of the test bed
# with the decision and delivery outcome a correct client reaches (the integration tests are written against
# it). The data lives beside this script: zones/*.zone (zone data), conf/* (daemon configurations, mxsec.conf,
# env.sh), www/ (MTA-STS policies); templates name their variables @NAME@, filled in by subst(). The code that
# writes and runs each part is in lib/: pki.sh, dns.sh, web.sh, postfix.sh, daemons.sh, postgres.sh.
#
# Files in DIR: mxsec.conf (config for mxsec against this bed), env.sh (TB_DIR TB_NSD TB_UNBOUND TB_REFUSED
# TB_UNBOUND_NOVAL TB_NGINX TB_CA TB_SMTP_DANE TB_SMTP_INSECURE TB_SMTP_STS TB_CONF TB_MAILDIR TB_MAILLOG
# TB_POSTFIX_ETC TB_SCRIPTED and TB_SCRIPTED_<MODE> = address of each scripted server), state/ queue/ (mxsec),
# pki/ (ca.pem ca.key; for each of mx-ee mx-ta mx-sts mx-insecure wrongname expired mx-rt: NAME.pem NAME.key
# NAME-chain.pem (leaf + CA); web.{pem,key}; tlsa.txt), dns/ (zones, keys, nsd/unbound configs, pid files and
# logs), nginx/ (config, pid, logs), www/<domain>/.well-known/mta-sts.txt (tests may overwrite these),
# postfix/ (etc/ spool/ data/ mail/catchall/ maillog), smtp/ (server.pid server.log <mode>/<n>.json),
# pg/ (TB_PG=1: data/ run/ postgres.log pgpass; env.sh then also has TB_PG_URI TB_PG_PASSFILE TB_PG_ADDR ...),
# setup.log (output of the tools).
set -euo pipefail
export LC_ALL=C
umask 022

# ---- address plan (the only place these are defined) ----
NSD_ADDR=127.0.53.1
UNBOUND_ADDR=127.0.53.2
REFUSED_ADDR=127.0.53.3
NOVAL_ADDR=127.0.53.4   # unbound without validation
STRIP_ADDR=127.0.53.5   # dns_strip_proxy.py: nsd's answers without RRSIGs
NGINX_ADDR=127.0.54.1
TLSRPT_HTTPS_ADDR=127.0.54.2   # no daemon: test_tlsrpt.py runs its HTTPS report receiver there
TLSRPT_HANG_ADDRS="127.0.54.3 127.0.54.4 127.0.54.5"   # no daemon: test_tlsrpt.py, TLS, never answers
TLSRPT_MANY_ADDRS=$(for i in $(seq 10 29); do printf '127.0.54.%s ' "$i"; done)   # 20; test_tlsrpt.py, silent TCP
SMTP_DANE_ADDR=127.0.55.1
SMTP_INSECURE_ADDR=127.0.55.2
SMTP_STS_ADDR=127.0.55.3
PG_ADDR=127.0.58.1      # PostgreSQL (TB_PG=1), TCP only (127.0.57.x: servers the suites start themselves)
# scripted SMTP servers (smtp_server.py): one behaviour (mode) per address
SCRIPTED_MODES=(nostarttls inject greet421 rcpt silent hsfail wrongname expired requiretls)
declare -A SCRIPTED=([nostarttls]=127.0.56.1 [inject]=127.0.56.2 [greet421]=127.0.56.3 [rcpt]=127.0.56.4
                     [silent]=127.0.56.5 [hsfail]=127.0.56.6 [wrongname]=127.0.56.7 [expired]=127.0.56.8
                     [requiretls]=127.0.56.9)
DNS_PORT=53
HTTPS_PORT=443
SMTP_PORT=25
PG_PORT=5432
# myhostname of each Postfix listener: named in its Received: header ("by NAME") and its banner
PF_NAME_DANE=dane.postfix.testbed
PF_NAME_INSECURE=insecure.postfix.testbed
PF_NAME_STS=sts.postfix.testbed
# the DANE host names served by Postfix on $SMTP_DANE_ADDR (SANs of mx-ee besides bulk)
DANE_PF_HOSTS=(mx.ee.dane.test mx.ta.dane.test mx.unusable.dane.test mx.tlsafail.dane.test plain.dane.test
               nomx.dane.test alias.mxcname2.dane.test mx.bogus.test)
# the scripted servers' addresses as template variables SCRIPTED_<MODE>=ADDR (zones/*.zone, conf/env.sh)
SCRIPTED_VARS=()
for m in "${SCRIPTED_MODES[@]}"; do SCRIPTED_VARS+=("SCRIPTED_${m^^}=${SCRIPTED[$m]}"); done

MARKER=.mxsec-testbed
ZONE_TTL=300
# zones signed with one algorithm each, label under test. -> ldns-keygen algorithm (one key, CSK)
ALG_ZONES=(rsasha256 rsasha512 ecdsap384 ed25519 ed448 rsamd5 dsa)
declare -A ALG_OF=([rsasha256]=RSASHA256 [rsasha512]=RSASHA512 [ecdsap384]=ECDSAP384SHA384 [ed25519]=ED25519
                   [ed448]=ED448 [rsamd5]=RSAMD5 [dsa]=DSA)
DAEMONS=(smtp postfix nginx unbound-noval unbound dnsstrip nsd-refused nsd)   # stop order
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# One file per concern: what each writes or runs (they use what this file defines)
for lib in daemons pki dns web postfix postgres; do . "$HERE/lib/$lib.sh"; done

prog=${0##*/}
msg() { echo "$prog: $*" >&2; }
die() { echo "$prog: error: $*" >&2; exit 1; }
usage() {
    sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

resolve_dir() {
    [ -n "${1:-}" ] || usage
    realpath -m -- "$1"
}

cmd_stop() {
    local d
    d=$(resolve_dir "${1:-}")
    [ -d "$d" ] || return 0
    local n
    [ -d "$d/pg" ] && pg_stop_server "$d"
    for n in "${DAEMONS[@]}"; do stop_daemon "$d" "$n"; done
    # nsd's children (xfrd, serve) leave shortly after the main process
    local i
    for ((i = 0; i < 50; i++)); do
        pgrep -f -- "$(printf '%s' "$d/dns/nsd" | sed 's/[][\.*^$+?(){}|]/\\&/g')" >/dev/null 2>&1 || break
        sleep 0.1
    done
    # Postfix's master ends its children (SIGTERM to its process group); a child that lingers would keep
    # port 25 of the test bed's addresses (listening sockets are inherited): wait, then end it
    if [ -d "$d/postfix/spool" ]; then
        local pids
        for ((i = 0; i < 50; i++)); do
            pids=$(postfix_children "$d")
            [ -z "$pids" ] && break
            sleep 0.1
        done
        if [ -n "$pids" ]; then
            msg "Postfix processes of $d still running after master exited: $(echo $pids); SIGTERM"
            kill -TERM $pids 2>/dev/null || true
            sleep 1
            pids=$(postfix_children "$d")
            [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
        fi
    fi
    return 0
}

cmd_status() {
    local d n pid rc=0
    d=$(resolve_dir "${1:-}")
    [ -f "$d/$MARKER" ] || { msg "no test bed in $d"; return 1; }
    for n in nsd nsd-refused dnsstrip unbound unbound-noval nginx postfix smtp; do
        if pid=$(running_pid "$d" "$n"); then
            echo "$n: running (pid $pid)"
        else
            echo "$n: not running"
            rc=1
        fi
    done
    if [ -d "$d/pg/data" ]; then
        if pid=$(pg_running_pid "$d"); then
            echo "postgres: running (pid $pid)"
        else
            echo "postgres: not running"
            rc=1
        fi
    fi
    return $rc
}

# pg-stop / pg-start: the test bed's PostgreSQL alone, its data kept (tests of a database that goes away)
cmd_pg() {  # stop|start DIR
    local d pid
    d=$(resolve_dir "${2:-}")
    [ -f "$d/$MARKER" ] || die "no test bed in $d"
    [ -f "$d/pg/data/PG_VERSION" ] || die "the test bed in $d has no PostgreSQL (start it with TB_PG=1)"
    if [ "$1" = stop ]; then
        pg_stop_server "$d"
        return 0
    fi
    if pid=$(pg_running_pid "$d"); then
        msg "postgres of $d already running (pid $pid)"
        return 0
    fi
    SETUP_LOG=$d/setup.log
    check_free "$PG_ADDR" "$PG_PORT" t postgres
    pg_start_server "$d"
}

# ---------------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------------
TB=
SETUP_LOG=
START_OK=0

run() {  # run a tool, output to setup.log; on failure show the tail of its output
    if ! "$@" >>"$SETUP_LOG" 2>&1; then
        tail -n 20 "$SETUP_LOG" >&2
        die "command failed: $* (full output: $SETUP_LOG)"
    fi
}

on_start_exit() {
    local rc=$?
    if [ "$START_OK" != 1 ] && [ -n "$TB" ]; then
        pg_init_abort
        msg "start failed (exit $rc): stopping what was started in $TB; tool output in $SETUP_LOG"
        cmd_stop "$TB" 2>/dev/null || true
        [ "$rc" = 0 ] && exit 1
    fi
}

check_free() {  # addr port proto-flag(t|u) label
    local line
    line=$(ss -Hlnp"$3" 2>/dev/null | awk -v a="$1:$2" '{ for (i = 1; i <= NF; i++) if ($i == a) { print; exit } }') || true
    if [ -n "$line" ]; then
        die "$1:$2 ($4) is already in use by another process: $(echo "$line" | sed -n 's/.*users://p')" \
            "- stop the other test bed (testbed.sh stop ITS_DIR) or that process first"
    fi
}

# subst TEMPLATE [NAME | NAME=VALUE]...: the data file tools/testbed/TEMPLATE with every @NAME@ replaced by the
# value of $NAME (or by VALUE) and its "##" lines (the template's own comments) dropped. A placeholder not named
# here is an error: no file reaches a daemon half filled in.
subst() {
    local t=$HERE/$1 a name val known=' ' args=(-e '/^##/d'); shift
    [ -f "$t" ] || die "missing data file $t"
    for a in "$@"; do
        name=${a%%=*}
        if [[ $a == *=* ]]; then val=${a#*=}; else val=${!a}; fi
        val=${val//\\/\\\\}; val=${val//|/\\|}; val=${val//&/\\&}; val=${val//$'\n'/\\$'\n'}
        args+=(-e "s|@$name@|$val|g"); known+="$name "
    done
    for name in $(sed '/^##/d' "$t" | grep -o '@[A-Z][A-Z0-9_]*@' | tr -d @ | sort -u); do
        [[ $known == *" $name "* ]] || die "$t: no value for @$name@"
    done
    sed "${args[@]}" "$t"
}

spki256() { openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1; }

# keygen ZONE [ALGORITHM [csk]]: new keys of ZONE, base paths in KSK_OF[ZONE] and ZSK_OF[ZONE]; with csk, only one
# key (KSK flag, ldns-signzone signs every RRset with it when it has no ZSK) and ZSK_OF[ZONE] is empty
declare -A KSK_OF=() ZSK_OF=()
# prepare_dir: TB emptied (only if it is a test bed) and laid out, setup.log opened; a start that fails from here
# on stops what it started
prepare_dir() {
    local c
    case $TB in /|/tmp|/root|/home|/usr|/etc|/var|/work) die "refusing to use $TB as test bed directory" ;; esac
    if [ -e "$TB" ] && [ ! -d "$TB" ]; then die "$TB exists and is not a directory"; fi
    if [ -d "$TB" ] && [ -n "$(ls -A -- "$TB")" ] && [ ! -f "$TB/$MARKER" ]; then
        die "$TB is not empty and is not a test bed (no $MARKER): refusing to wipe it"
    fi
    for c in nsd unbound unbound-control kdig ldns-keygen ldns-signzone nsd-checkzone certtool openssl nginx curl ss \
             postfix postconf runuser /usr/bin/python3; do
        command -v "$c" >/dev/null || die "missing tool: $c"
    done
    [ "$PG" = 1 ] && pg_bin >/dev/null   # dies when no server is installed
    if [ -f "$TB/$MARKER" ]; then
        cmd_stop "$TB"
        find "$TB" -mindepth 1 -delete
    fi
    mkdir -p "$TB"
    touch "$TB/$MARKER"
    mkdir -p "$TB"/{dns,pki,nginx,www,state,queue,postfix,smtp}
    SETUP_LOG=$TB/setup.log
    : > "$SETUP_LOG"
    trap on_start_exit EXIT
}

check_ports() {  # every address and port the test bed serves is free
    local m
    check_free "$NSD_ADDR" "$DNS_PORT" u nsd;              check_free "$NSD_ADDR" "$DNS_PORT" t nsd
    check_free "$REFUSED_ADDR" "$DNS_PORT" u nsd-refused;  check_free "$REFUSED_ADDR" "$DNS_PORT" t nsd-refused
    check_free "$UNBOUND_ADDR" "$DNS_PORT" u unbound;      check_free "$UNBOUND_ADDR" "$DNS_PORT" t unbound
    check_free "$NOVAL_ADDR" "$DNS_PORT" u unbound-noval;  check_free "$NOVAL_ADDR" "$DNS_PORT" t unbound-noval
    check_free "$STRIP_ADDR" "$DNS_PORT" u dnsstrip
    check_free "$NGINX_ADDR" "$HTTPS_PORT" t nginx
    check_free "$SMTP_DANE_ADDR" "$SMTP_PORT" t postfix
    check_free "$SMTP_INSECURE_ADDR" "$SMTP_PORT" t postfix
    check_free "$SMTP_STS_ADDR" "$SMTP_PORT" t postfix
    for m in "${SCRIPTED_MODES[@]}"; do check_free "${SCRIPTED[$m]}" "$SMTP_PORT" t "smtp_server.py $m"; done
    [ "$PG" = 1 ] && check_free "$PG_ADDR" "$PG_PORT" t postgres
    return 0
}

start_daemons() {  # in dependency order, each answering its probe before the next starts
    start_daemon nsd probe_nsd nsd -c "$TB/dns/nsd.conf"
    start_daemon nsd-refused probe_refused nsd -c "$TB/dns/nsd-refused.conf"
    start_daemon dnsstrip probe_dnsstrip /usr/bin/python3 "$HERE/dns_strip_proxy.py" --listen "$STRIP_ADDR:$DNS_PORT" \
        --upstream "$REFUSED_ADDR:$DNS_PORT" --pidfile "$TB/dns/strip.pid" --log "$TB/dns/strip.log"
    start_daemon unbound probe_unbound unbound -c "$TB/dns/unbound.conf"
    start_daemon unbound-noval probe_unbound_noval unbound -c "$TB/dns/unbound-noval.conf"
    start_daemon nginx probe_nginx nginx -p "$TB/nginx/" -e "$TB/nginx/error.log" -c "$TB/nginx/nginx.conf"
    start_daemon postfix probe_postfix postfix -c "$TB/postfix/etc" start
    local m listen=()
    for m in "${SCRIPTED_MODES[@]}"; do listen+=(--listen "$m=${SCRIPTED[$m]}:$SMTP_PORT"); done
    start_daemon smtp probe_smtp /usr/bin/python3 "$HERE/smtp_server.py" --dir "$TB" \
        --pidfile "$TB/smtp/server.pid" "${listen[@]}"
    [ "$PG" = 1 ] && pg_timed pg_start_server "$TB" init
    return 0
}

cmd_start() {
    local t0=$SECONDS
    BULK=${TB_BULK:-0}   # benchmark domains bN.dane.test and bN.sts.test, N = 1..TB_BULK
    [[ $BULK =~ ^[0-9]+$ ]] || die "TB_BULK must be a number"
    PG=${TB_PG:-0}       # PostgreSQL in DIR/pg (lib/postgres.sh)
    [[ $PG =~ ^[01]$ ]] || die "TB_PG must be 0 or 1"
    TB=$(resolve_dir "${1:-}")
    prepare_dir
    check_ports
    [ "$PG" = 1 ] && pg_timed pg_init_begin   # initdb works in the background from here to write_postgres
    SERIAL=$(date +%s)
    make_pki
    write_zones
    make_keys
    write_keyed_zones
    sign_zones
    write_dns_configs
    write_www
    write_nginx_conf
    write_postfix_conf
    write_client_files
    [ "$PG" = 1 ] && pg_timed write_postgres
    start_daemons
    START_OK=1
    trap - EXIT
    local pg_note=
    [ "$PG" = 1 ] && pg_note=$(printf '; PostgreSQL %d.%d s of it' $((PG_US / 1000000)) $((PG_US / 100000 % 10)))
    msg "test bed running in $TB ($((SECONDS - t0)) s$pg_note): source $TB/env.sh; mxsec --config $TB/mxsec.conf"
}

# ---------------------------------------------------------------------------------------------------
# set-txt / del-txt: edit sts.test, reload nsd, flush unbound
# ---------------------------------------------------------------------------------------------------
txt_rdata() {  # value -> quoted character-strings (<= 255 bytes each, \ and " escaped)
    local v=$1 out='' chunk
    [ -n "$v" ] || { echo '""'; return; }
    while [ -n "$v" ]; do
        chunk=${v:0:255}
        v=${v:255}
        chunk=${chunk//\\/\\\\}
        chunk=${chunk//\"/\\\"}
        out+="${out:+ }\"$chunk\""
    done
    echo "$out"
}

cmd_edit_txt() {  # mode(set|del) DIR OWNER [VALUE]
    local mode=$1 d owner value='' zf pid serial i got
    d=$(resolve_dir "${2:-}")
    [ -n "${3:-}" ] || usage
    owner=$(echo "$3" | tr 'A-Z' 'a-z')
    owner=${owner%.}.
    if [ "$mode" = set ]; then
        [ $# -ge 4 ] || usage
        value=$4
        case $value in *$'\n'*|*$'\r'*) die "TXT value must not contain newlines" ;; esac
    fi
    case $owner in sts.test.|*.sts.test.) ;; *) die "$3 is not in the zone sts.test" ;; esac
    case $owner in *[!a-z0-9._-]*) die "bad owner name: $3" ;; esac
    [ -f "$d/$MARKER" ] || die "no test bed in $d"
    zf=$d/dns/zones/sts.test.zone
    [ -f "$zf" ] || die "missing $zf"
    pid=$(running_pid "$d" nsd) || die "nsd of $d is not running"

    exec 9>"$d/dns/sts.test.lock"
    flock 9
    local rdata
    [ "$mode" = set ] && rdata=$(txt_rdata "$value")
    NEWREC=${rdata:-} awk -v o="$owner" -v ttl="$ZONE_TTL" '
        $1 == o && $3 == "IN" && $4 == "TXT" { next }
        $4 == "SOA" { $7 = $7 + 1; serial = $7 }
        { print }
        END { new = ENVIRON["NEWREC"]; if (new != "") print o, ttl, "IN", "TXT", new; print serial > "/dev/stderr" }
    ' "$zf" > "$zf.new" 2>"$zf.serial"
    serial=$(cat "$zf.serial"); rm -f "$zf.serial"
    nsd-checkzone sts.test "$zf.new" >/dev/null 2>"$zf.err" || {
        cat "$zf.err" >&2; rm -f "$zf.new" "$zf.err"; die "the edited zone does not load; zone file unchanged"
    }
    rm -f "$zf.err"
    mv -f "$zf.new" "$zf"
    kill -HUP "$pid"
    for ((i = 0; i < 100; i++)); do
        got=$(kdig @"$NSD_ADDR" -p "$DNS_PORT" +timeout=1 +retry=0 +norec +short SOA sts.test. 2>/dev/null | awk '{print $3}')
        [ "$got" = "$serial" ] && break
        sleep 0.1
    done
    [ "$got" = "$serial" ] || die "nsd did not load sts.test serial $serial within 10 s (has '$got'); see $d/dns/nsd.log"
    unbound-control -c "$d/dns/unbound.conf" flush_zone sts.test >/dev/null ||
        die "unbound-control flush_zone sts.test failed; see $d/dns/unbound.log"
    unbound-control -c "$d/dns/unbound.conf" flush_requestlist >/dev/null 2>&1 || true
    unbound-control -c "$d/dns/unbound-noval.conf" flush_zone sts.test >/dev/null 2>&1 ||
        msg "warning: unbound-control flush_zone sts.test failed for the non-validating unbound"
    flock -u 9
    if [ "$mode" = set ]; then
        msg "sts.test serial $serial: TXT $owner set to $rdata"
    else
        msg "sts.test serial $serial: TXT $owner deleted"
    fi
}

# The callers hold /tmp/mxsec-testbed.lock on fd 9 while they use the test
# bed; daemons started here must not inherit it, or a daemon that outlives
# its test bed would keep every later run waiting for the lock.
exec 9>&-

case ${1:-} in
    start)   [ $# -eq 2 ] || usage; cmd_start "$2" ;;
    stop)    [ $# -eq 2 ] || usage; cmd_stop "$2" ;;
    status)  [ $# -eq 2 ] || usage; cmd_status "$2" ;;
    set-txt) [ $# -eq 4 ] || usage; cmd_edit_txt set "$2" "$3" "$4" ;;
    del-txt) [ $# -eq 3 ] || usage; cmd_edit_txt del "$2" "$3" ;;
    pg-stop)  [ $# -eq 2 ] || usage; cmd_pg stop "$2" ;;
    pg-start) [ $# -eq 2 ] || usage; cmd_pg start "$2" ;;
    *)       usage ;;
esac
