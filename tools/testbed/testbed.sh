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
#
# What it is: real servers on 127.0.0.0/8, nothing faked, nothing outside DIR (pid files, logs, keys, zones,
# temp paths, mail; needs root for ports 25/53/443; DIR gets mode go+x for Postfix's unprivileged processes):
#   - nsd, authoritative for test. and its children, signed at every start with fresh keys; a second nsd that
#     answers REFUSED (lame delegations) but serves rrsigstrip.test to dns_strip_proxy.py, which deletes RRSIGs
#   - unbound, validating (trust anchor: DS of test.), mxsec's resolver; a second unbound that does not validate
#   - nginx serving the MTA-STS policies DIR/www/<domain>/.well-known/mta-sts.txt (private CA DIR/pki/ca.pem)
#   - Postfix, a private instance, the honest receiving MTA: three smtpd listeners, one catch-all Maildir
#   - smtp_server.py: scripted SMTP servers, one behaviour per address, each accepted message kept as JSON
# tools/testbed/README says what each one does in detail, the address plan, and every domain of the test bed
# with the decision and delivery outcome a correct client reaches (the integration tests are written against
# it). The data lives beside this script: zones/*.zone (zone data), conf/* (daemon configurations, mxsec.conf,
# env.sh), www/ (MTA-STS policies); templates name their variables @NAME@, filled in by subst().
#
# Files in DIR: mxsec.conf (config for mxsec against this bed), env.sh (TB_DIR TB_NSD TB_UNBOUND TB_REFUSED
# TB_UNBOUND_NOVAL TB_NGINX TB_CA TB_SMTP_DANE TB_SMTP_INSECURE TB_SMTP_STS TB_CONF TB_MAILDIR TB_MAILLOG
# TB_POSTFIX_ETC TB_SCRIPTED and TB_SCRIPTED_<MODE> = address of each scripted server), state/ queue/ (mxsec),
# pki/ (ca.pem ca.key; for each of mx-ee mx-ta mx-sts mx-insecure wrongname expired: NAME.pem NAME.key
# NAME-chain.pem (leaf + CA); web.{pem,key}; tlsa.txt), dns/ (zones, keys, nsd/unbound configs, pid files and
# logs), nginx/ (config, pid, logs), www/<domain>/.well-known/mta-sts.txt (tests may overwrite these),
# postfix/ (etc/ spool/ data/ mail/catchall/ maillog), smtp/ (server.pid server.log <mode>/<n>.json),
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
# scripted SMTP servers (smtp_server.py): one behaviour (mode) per address
SCRIPTED_MODES=(nostarttls inject greet421 rcpt silent hsfail wrongname expired requiretls)
declare -A SCRIPTED=([nostarttls]=127.0.56.1 [inject]=127.0.56.2 [greet421]=127.0.56.3 [rcpt]=127.0.56.4
                     [silent]=127.0.56.5 [hsfail]=127.0.56.6 [wrongname]=127.0.56.7 [expired]=127.0.56.8
                     [requiretls]=127.0.56.9)
DNS_PORT=53
HTTPS_PORT=443
SMTP_PORT=25
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

prog=${0##*/}
msg() { echo "$prog: $*" >&2; }
die() { echo "$prog: error: $*" >&2; exit 1; }
usage() {
    sed -n '3,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

resolve_dir() {
    [ -n "${1:-}" ] || usage
    realpath -m -- "$1"
}

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

stop_daemon() {
    local d=$1 name=$2 pid pidf i st
    pidf=$(daemon_info "$d" "$name"); pidf=${pidf%% *}
    if pid=$(running_pid "$d" "$name"); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            st=$(proc_state "$pid")
            { [ -z "$st" ] || [ "$st" = Z ]; } && break
            sleep 0.1
        done
        st=$(proc_state "$pid")
        if [ -n "$st" ] && [ "$st" != Z ]; then
            msg "$name (pid $pid) did not exit after SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        msg "stopped $name (pid $pid)"
    fi
    rm -f -- "$pidf"
}

cmd_stop() {
    local d
    d=$(resolve_dir "${1:-}")
    [ -d "$d" ] || return 0
    local n
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

postfix_children() {  # pids of the processes whose working directory is the Postfix queue of DIR
    find /proc -mindepth 2 -maxdepth 2 -name cwd -lname "$1/postfix/spool" -printf '%h\n' 2>/dev/null |
        sed -n 's|^/proc/\([0-9]*\)$|\1|p'
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
    return $rc
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

make_cert() {  # name cn dns_names...   (key + cert signed by the CA; CERT_VALIDITY: template lines for dates)
    local name=$1 cn=$2; shift 2
    local t="$TB/pki/tmpl/$name.tmpl" n
    {
        echo "cn = \"$cn\""
        echo "organization = \"mxsec test bed\""
        for n in "$@"; do echo "dns_name = \"$n\""; done
        echo "tls_www_server"
        echo "signing_key"
        echo "encryption_key"
        echo "${CERT_VALIDITY:-expiration_days = 365}"
    } > "$t"
    run certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --no-text --outfile "$TB/pki/$name.key"
    run certtool --generate-certificate --load-privkey "$TB/pki/$name.key" \
        --load-ca-certificate "$TB/pki/ca.pem" --load-ca-privkey "$TB/pki/ca.key" \
        --template "$t" --outfile "$TB/pki/$name.pem"
    cat "$TB/pki/$name.pem" "$TB/pki/ca.pem" > "$TB/pki/$name-chain.pem"
    chmod 0644 "$TB/pki/$name.key"   # test keys: readable by SMTP test servers under any user
}

spki256() { openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1; }

# zones/sts.test.zone is the one list of the MTA-STS domains: their labels X (mta-sts.X.sts.test has an A record)
# and the MX hosts served by the Postfix listener on $SMTP_STS_ADDR, both in the zone's order
sts_domains() { sed -n 's/^mta-sts\.\([^ ]*\)\.sts\.test\. .* IN A .*/\1/p' "$HERE/zones/sts.test.zone"; }
sts_postfix_hosts() {
    awk '$4 == "A" && $5 == "@SMTP_STS_ADDR@" { sub(/\.$/, "", $1); print $1 }' "$HERE/zones/sts.test.zone"
}

make_pki() {
    local p=$TB/pki
    mkdir -p "$p/tmpl"
    subst conf/ca.tmpl > "$p/tmpl/ca.tmpl"
    run certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$p/ca.key"
    run certtool --generate-self-signed --load-privkey "$p/ca.key" --template "$p/tmpl/ca.tmpl" \
        --outfile "$p/ca.pem"
    make_cert mx-ee mx.ee.dane.test "${DANE_PF_HOSTS[@]}"
    make_cert mx-ta mx.ta.dane.test mx.ta.dane.test
    make_cert mx-insecure mx.insecure.test mx.insecure.test
    make_cert wrongname wrong.example.net wrong.example.net
    CERT_VALIDITY=$'activation_date = "2020-01-01 00:00:00 UTC"\nexpiration_date = "2021-01-01 00:00:00 UTC"' \
        make_cert expired mx.expired.sts.test mx.expired.sts.test mx.expired.dane.test
    make_cert mx-rt mx.requiretls.sts.test mx.requiretls.sts.test mx.requiretls.dane.test mx.requiretls.insecure.test
    local sts=() web=() x
    mapfile -t sts < <(sts_postfix_hosts)
    [ ${#sts[@]} -gt 0 ] || die "no MX host at @SMTP_STS_ADDR@ in $HERE/zones/sts.test.zone"
    make_cert mx-sts "${sts[0]}" "${sts[@]}"
    for x in $(sts_domains); do web+=("mta-sts.$x.sts.test"); done
    web+=(mta-sts.both.dane.test)
    # Benchmark policy hosts and MX hosts: certtool takes about a hundred names per certificate, so they
    # get certificates of 100 names each (web-bulkC, mx-sts-bulkC), which nginx and Postfix pick by SNI.
    local c names mxnames
    for ((c = 0; c * 100 < BULK; c++)); do
        names=(); mxnames=()
        for ((x = c * 100 + 1; x <= BULK && x <= (c + 1) * 100; x++)); do
            names+=("mta-sts.b$x.sts.test"); mxnames+=("mx.b$x.sts.test")
        done
        make_cert "web-bulk$c" "${names[0]}" "${names[@]}"
        make_cert "mx-sts-bulk$c" "${mxnames[0]}" "${mxnames[@]}"
    done
    make_cert web "mta-sts.enforce.sts.test" "${web[@]}"

    # TLSA data from the generated certificates
    EE_SPKI256=$(spki256 "$p/mx-ee.pem")
    EXPIRED_SPKI256=$(spki256 "$p/expired.pem")
    RT_SPKI256=$(spki256 "$p/mx-rt.pem")
    EE_CERT512=$(openssl x509 -in "$p/mx-ee.pem" -outform DER | sha512sum | cut -d' ' -f1)
    CA_CERT256=$(openssl x509 -in "$p/ca.pem" -outform DER | sha256sum | cut -d' ' -f1)
    [ ${#EE_SPKI256} = 64 ] && [ ${#EE_CERT512} = 128 ] && [ ${#CA_CERT256} = 64 ] && [ ${#EXPIRED_SPKI256} = 64 ] &&
        [ ${#RT_SPKI256} = 64 ] || die "could not compute TLSA data from $p/mx-ee.pem / expired.pem / mx-rt.pem / ca.pem"
    printf '%s\n' "mx-ee 3 1 1 $EE_SPKI256" "mx-ee 3 0 2 $EE_CERT512" "ca 2 0 1 $CA_CERT256" \
        "expired 3 1 1 $EXPIRED_SPKI256" "mx-rt 3 1 1 $RT_SPKI256" > "$p/tlsa.txt"
}

# keygen ZONE [ALGORITHM [csk]]: new keys of ZONE, base paths in KSK_OF[ZONE] and ZSK_OF[ZONE]; with csk, only one
# key (KSK flag, ldns-signzone signs every RRset with it when it has no ZSK) and ZSK_OF[ZONE] is empty
declare -A KSK_OF=() ZSK_OF=()
keygen() {
    local zone=$1 alg=${2:-ECDSAP256SHA256} k z= bits=()
    case $alg in RSA*) bits=(-b 2048) ;; esac   # ldns-keygen needs a size for RSA
    k=$(cd "$TB/dns/keys" && ldns-keygen -a "$alg" "${bits[@]}" -k "$zone") || die "ldns-keygen $alg failed for $zone"
    if [ "${3:-}" != csk ]; then
        z=$(cd "$TB/dns/keys" && ldns-keygen -a "$alg" "${bits[@]}" "$zone") || die "ldns-keygen $alg failed for $zone"
    fi
    KSK_OF[$zone]="$TB/dns/keys/$k"
    ZSK_OF[$zone]=${z:+$TB/dns/keys/$z}
}

zone_head() {  # ZONE: the $ORIGIN, $TTL, SOA and NS lines that open its zone file
    echo "\$ORIGIN $1."
    echo "\$TTL $ZONE_TTL"
    echo "@ IN SOA ns.test. hostmaster.test. $SERIAL 3600 600 86400 60"
    echo "@ IN NS ns.test."
}

zone_file() {  # ZONE TEMPLATE [NAME=VALUE...]: DIR/dns/zones/ZONE.zone = zone_head, then zones/TEMPLATE
    { zone_head "$1"; subst "zones/$2" "${ZONE_VARS[@]}" "${@:3}"; } > "$TB/dns/zones/$1.zone"
}

# The zones but test. and wrongkey.test (their files need the keys: write_keyed_zones); ZONE_VARS: the variables
# every zone template may use
write_zones() {
    local z=$TB/dns/zones zone b addr
    mkdir -p "$z"
    ZONE_VARS=(NSD_ADDR REFUSED_ADDR STRIP_ADDR NGINX_ADDR TLSRPT_HTTPS_ADDR SMTP_DANE_ADDR SMTP_INSECURE_ADDR
               SMTP_STS_ADDR ZONE_TTL SERIAL EE_SPKI256 EE_CERT512 CA_CERT256 EXPIRED_SPKI256 RT_SPKI256
               "${SCRIPTED_VARS[@]}")
    for zone in dane.test bogus.test insecure.test nsec3.test; do zone_file "$zone" "$zone.zone"; done
    for ((b = 1; b <= BULK; b++)); do   # benchmark domains bN.dane.test, DANE-EE like ee.dane.test
        echo "b$b IN MX 10 mx.b$b"
        echo "mx.b$b IN A $SMTP_DANE_ADDR"
        echo "_25._tcp.mx.b$b IN TLSA 3 1 1 $EE_SPKI256"
    done >> "$z/dane.test.zone"
    {   # no $ORIGIN: fully qualified, one record per line (set-txt edits it); benchmark domains: MTA-STS enforce
        subst zones/sts.test.zone "${ZONE_VARS[@]}"
        for addr in $TLSRPT_HANG_ADDRS; do echo "tlsrpt-hang.sts.test. $ZONE_TTL IN A $addr"; done
        for addr in $TLSRPT_MANY_ADDRS; do echo "tlsrpt-many.sts.test. $ZONE_TTL IN A $addr"; done
        for ((b = 1; b <= BULK; b++)); do
            echo "b$b.sts.test. $ZONE_TTL IN MX 10 mx.b$b.sts.test."
            echo "mx.b$b.sts.test. $ZONE_TTL IN A $SMTP_STS_ADDR"
            echo "_mta-sts.b$b.sts.test. $ZONE_TTL IN TXT \"v=STSv1; id=b$b\""
            echo "mta-sts.b$b.sts.test. $ZONE_TTL IN A $NGINX_ADDR"
        done
    } > "$z/sts.test.zone"
    # one MX host each; the hosts of the insecure zones and of rsamd5.test and dsa.test (algorithms that must
    # not be validated) are insecure. (optout.test: its delegation to child.optout.test is added after signing.)
    for zone in unsigned.nsec3.test optout.test child.optout.test dsbad.test rrsigstrip.test unsupalg.test \
                "${ALG_ZONES[@]/%/.test}"; do
        case $zone in
            unsigned.*|child.*|unsupalg.*|rsamd5.*|dsa.*) addr=$SMTP_INSECURE_ADDR ;;
            *)                                            addr=$SMTP_DANE_ADDR ;;
        esac
        zone_file "$zone" one-mx.zone MX_ADDR="$addr"
    done
}

# Keys: KSK + ZSK per signed zone, one key (CSK: RSA key generation is slow) per one-algorithm zone. wrongkey.test
# gets a second ZSK, WRONGKEY_ZSK2, that signs its data but is not in its DNSKEY set (signed with -d: keys not added)
make_keys() {
    local zone a
    mkdir -p "$TB/dns/keys"
    for zone in test dane.test bogus.test nsec3.test optout.test dsbad.test rrsigstrip.test wrongkey.test \
                unsupalg.test; do
        keygen "$zone"
    done
    for a in "${ALG_ZONES[@]}"; do keygen "$a.test" "${ALG_OF[$a]}" csk; done
    WRONGKEY_ZSK2=$TB/dns/keys/$(cd "$TB/dns/keys" && ldns-keygen -a ECDSAP256SHA256 wrongkey.test) ||
        die "ldns-keygen failed for wrongkey.test"
    cp "${KSK_OF[test]}.ds" "$TB/dns/test-anchor.ds"
}

alg_zone_delegations() {  # NS + DS of the one-algorithm zones: test.zone's DS_ALG_ZONES
    local a
    for a in "${ALG_ZONES[@]}"; do
        echo "$a IN NS ns.test."
        case $a in
            rsamd5|dsa) ldns-key2ds -n -2 "${KSK_OF[$a.test]}.key" || return 1 ;;
            *)          cat "${KSK_OF[$a.test]}.ds" ;;
        esac
    done
}

# wrongkey.test (its DNSKEY set in the zone, signed by the KSK) and test. (the DS of each secure delegation:
# DS_NAME for NAME.test; unsupalg.test's names algorithm 253; the one-algorithm zones' DS as ldns-keygen makes it,
# SHA-384 for ECDSAP384SHA384, SHA-256 for the others, except rsamd5.test and dsa.test: signed with RSAMD5 and
# DSA, which RFC 8624 says MUST NOT be validated; their DS has a SHA-256 digest, so only the algorithm makes
# the delegation insecure)
write_keyed_zones() {
    local z=$TB/dns/zones zone ds_vars=() alg_ds
    { zone_head wrongkey.test; cat "${KSK_OF[wrongkey.test]}.key" "${ZSK_OF[wrongkey.test]}.key"
      subst zones/one-mx.zone "${ZONE_VARS[@]}" MX_ADDR="$SMTP_DANE_ADDR"; } > "$z/wrongkey.test.zone"
    for zone in dane bogus nsec3 optout rrsigstrip wrongkey; do
        ds_vars+=("DS_${zone^^}=$(cat "${KSK_OF[$zone.test]}.ds")")
    done
    ds_vars+=("DS_UNSUPALG=$(awk '{ $5 = 253; print }' "${KSK_OF[unsupalg.test]}.ds")")
    # the DS digest with its last hex digit changed: matches no key of dsbad.test
    ds_vars+=("DS_DSBAD=$(awk '{ d = $NF; c = substr(d, length(d)); $NF = substr(d, 1, length(d) - 1) \
        (c == "0" ? "1" : "0"); print }' "${KSK_OF[dsbad.test]}.ds")")
    alg_ds=$(alg_zone_delegations) || die "ldns-key2ds failed for a zone of ${ALG_ZONES[*]}"
    zone_file test test.zone "${ds_vars[@]}" DS_ALG_ZONES="$alg_ds"
    for zone in test dane.test bogus.test insecure.test sts.test nsec3.test unsigned.nsec3.test optout.test \
                child.optout.test dsbad.test rrsigstrip.test wrongkey.test unsupalg.test "${ALG_ZONES[@]/%/.test}"; do
        run nsd-checkzone "$zone" "$z/$zone.zone"
    done
}

sign() {  # ZONE OPTION...: ldns-signzone OPTION... with the keys of ZONE: ZONE.zone -> ZONE.zone.signed
    local zone=$1 f=$TB/dns/zones/$1.zone; shift
    run ldns-signzone "$@" -f "$f.signed" "$f" "${KSK_OF[$zone]}" ${ZSK_OF[$zone]:+"${ZSK_OF[$zone]}"}
}

sign_zones() {  # valid from an hour ago (clock skew) for 30 days; bogus.test expired in 2020
    local inc exp a
    inc=$(date -u -d '1 hour ago' +%Y%m%d%H%M%S)
    exp=$(date -u -d '30 days' +%Y%m%d%H%M%S)
    sign test -i "$inc" -e "$exp"
    sign dane.test -i "$inc" -e "$exp"
    sign bogus.test -i 20200101 -e 20200201
    sign nsec3.test -n -t 0 -i "$inc" -e "$exp"
    sign optout.test -n -t 0 -p -i "$inc" -e "$exp"
    # A real opt-out span: ldns-signzone -p sets the flag but keeps unsigned delegations in the NSEC3 chain,
    # so the delegation is added only now. It has no NSEC3 of its own; an opt-out NSEC3 covers its hash.
    echo "child.optout.test. $ZONE_TTL IN NS ns.test." >> "$TB/dns/zones/optout.test.zone.signed"
    sign dsbad.test -i "$inc" -e "$exp"
    sign rrsigstrip.test -i "$inc" -e "$exp"
    ZSK_OF[wrongkey.test]=$WRONGKEY_ZSK2   # signs the data; the zone file has the first ZSK in its DNSKEY set
    sign wrongkey.test -d -i "$inc" -e "$exp"
    sign unsupalg.test -i "$inc" -e "$exp"
    for a in "${ALG_ZONES[@]}"; do sign "$a.test" -i "$inc" -e "$exp"; done
}

# write_unbound_conf NAME ADDR WHAT SERVER_LINES: DIR/dns/NAME.conf, an unbound on ADDR:$DNS_PORT with its pid
# file, log and control socket DIR/dns/NAME.{pid,log,ctl}, stub zone test. at nsd
write_unbound_conf() {
    local ctl=$TB/dns/$1.ctl
    [ ${#ctl} -lt 100 ] || die "DIR path too long for unbound's control socket ($ctl): use a shorter DIR"
    subst conf/unbound.conf TB NSD_ADDR DNS_PORT NAME="$1" ADDR="$2" WHAT="$3" SERVER_EXTRA="$4" > "$TB/dns/$1.conf"
}

write_dns_configs() {
    local d=$TB/dns a
    subst conf/nsd.conf TB NSD_ADDR DNS_PORT > "$d/nsd.conf"
    for a in "${ALG_ZONES[@]}"; do
        printf 'zone:\n    name: "%s.test."\n    zonefile: "%s.test.zone.signed"\n' "$a" "$a"
    done >> "$d/nsd.conf"
    subst conf/nsd-refused.conf TB REFUSED_ADDR STRIP_ADDR DNS_PORT > "$d/nsd-refused.conf"
    # The validating resolver (mxsec's) and one that does not validate: same stub zone.
    write_unbound_conf unbound "$UNBOUND_ADDR" "validating resolver of the test bed, trust anchor: DS of test." \
        "    val-log-level: 2
    trust-anchor-file: \"$d/test-anchor.ds\"
    ede: yes"
    write_unbound_conf unbound-noval "$NOVAL_ADDR" \
        "WITHOUT validation: no trust anchor, iterator only. It hands out bogus data and never sets AD:
# mxsec's resolver self-check must catch it." \
        "    module-config: \"iterator\""
    run nsd-checkconf "$d/nsd.conf"
    run nsd-checkconf "$d/nsd-refused.conf"
    run unbound-checkconf "$d/unbound.conf"
    run unbound-checkconf "$d/unbound-noval.conf"
}

policy_file() {  # domain content(printf %b)
    local f=$TB/www/$1/.well-known/mta-sts.txt
    mkdir -p "${f%/*}"
    printf '%b' "$2" > "$f"
}

big_policy() {  # domain size: valid header, then mx lines, then one padding line; exactly SIZE bytes
    local f=$TB/www/$1/.well-known/mta-sts.txt
    mkdir -p "${f%/*}"
    awk -v dom="$1" -v size="$2" 'BEGIN {
        s = "version: STSv1\nmode: enforce\nmx: mx." dom "\nmax_age: 86400\n"
        i = 0
        while (length(s) < size - 100) s = s sprintf("mx: h%06d.%s\n", i++, dom)
        pad = size - length(s) - 8
        s = s "x-pad: "
        for (j = 0; j < pad; j++) s = s "a"
        printf "%s\n", s
    }' > "$f"
    [ "$(stat -c %s "$f")" = "$2" ] || die "internal error: $f is not $2 bytes"
}

# DIR/www: the policy files of www/, and generated: big.sts.test and chunked.sts.test (70000 bytes each) and the
# benchmark domains' policies
write_www() {
    local x b
    for x in $(sts_domains); do mkdir -p "$TB/www/$x.sts.test/.well-known"; done   # redirect, notfound: no file
    cp -R "$HERE/www/." "$TB/www/"
    big_policy big.sts.test 70000
    big_policy chunked.sts.test 70000
    for ((b = 1; b <= BULK; b++)); do
        policy_file "b$b.sts.test" "version: STSv1\nmode: enforce\nmx: mx.b$b.sts.test\nmax_age: 86400\n"
    done
}

web_cert_conf() {  # the ssl_certificate lines: static, or chosen by SNI when there are bulk domains
    if [ "$BULK" = 0 ]; then
        echo "    ssl_certificate $TB/pki/web.pem;"
        echo "    ssl_certificate_key $TB/pki/web.key;"
        return
    fi
    echo "    map \$ssl_server_name \$webcert {"
    echo "        default web;"
    local b
    for ((b = 1; b <= BULK; b++)); do echo "        mta-sts.b$b.sts.test web-bulk$(((b - 1) / 100));"; done
    echo "    }"
    echo "    ssl_certificate $TB/pki/\$webcert.pem;"
    echo "    ssl_certificate_key $TB/pki/\$webcert.key;"
}

write_nginx_conf() {
    local n=$TB/nginx user=
    mkdir -p "$n"/{body,proxy,fastcgi,uwsgi,scgi}
    # workers run as root when started by root, so that a DIR with mode 0700 (mktemp -d) stays readable
    [ "$(id -u)" = 0 ] && user="user root root;"
    subst conf/nginx.conf TB NGINX_ADDR HTTPS_PORT USER="$user" WEB_CERT_CONF="$(web_cert_conf)" > "$n/nginx.conf"
    run nginx -t -q -p "$n/" -e "$n/error.log" -c "$n/nginx.conf"
}

write_postfix_conf() {
    local B=$TB/postfix p=$TB/pki c proto
    mkdir -p "$B/etc" "$B/spool" "$B/data" "$B/mail"
    chown postfix "$B/data"
    chown nobody:nogroup "$B/mail"
    # Postfix's unprivileged processes (user postfix, virtual(8) as nobody) must reach DIR/postfix
    chmod go+x "$TB"
    runuser -u postfix -- test -x "$B/spool" ||
        die "user postfix cannot reach $B: every parent directory of $TB must be searchable (chmod o+x)"
    for proto in /usr/share/postfix/master.cf.dist /etc/postfix/master.cf.proto /etc/postfix/master.cf; do
        [ -f "$proto" ] && break
    done
    [ -f "$proto" ] || die "no master.cf template of the postfix package (/usr/share/postfix/master.cf.dist)"
    cp "$proto" "$B/etc/master.cf"
    subst conf/postfix-main.cf TB SMTP_DANE_ADDR SMTP_INSECURE_ADDR SMTP_STS_ADDR SMTP_PORT > "$B/etc/main.cf"
    # SNI table of the MTA-STS listener: mx-sts for its names, mx-sts-bulkC for the benchmark's MX hosts
    # (values: one file with key + leaf + CA)
    cat "$p/mx-sts.key" "$p/mx-sts-chain.pem" > "$B/etc/mx-sts.pem"
    openssl x509 -in "$p/mx-sts.pem" -noout -ext subjectAltName | tr ',' '\n' |
        sed -n "s|^ *DNS:\(.*\)|\1 $B/etc/mx-sts.pem|p" > "$B/etc/sts-sni"
    for ((c = 0; c * 100 < BULK; c++)); do
        cat "$p/mx-sts-bulk$c.key" "$p/mx-sts-bulk$c-chain.pem" > "$B/etc/mx-sts-bulk$c.pem"
        openssl x509 -in "$p/mx-sts-bulk$c.pem" -noout -ext subjectAltName | tr ',' '\n' |
            sed -n "s|^ *DNS:\(.*\)|\1 $B/etc/mx-sts-bulk$c.pem|p" >> "$B/etc/sts-sni"
    done
    chmod 0644 "$B"/etc/*.pem   # test keys, like pki/*.key
    run postconf -c "$B/etc" -F '*/*/chroot = n'
    run postconf -c "$B/etc" -MX smtp/inet
    subst conf/postfix-master.cf TB SMTP_DANE_ADDR SMTP_INSECURE_ADDR SMTP_STS_ADDR SMTP_PORT PF_NAME_DANE \
        PF_NAME_INSECURE PF_NAME_STS >> "$B/etc/master.cf"
    run postfix -c "$B/etc" check
}

write_client_files() {
    mkdir -p "$TB/state" "$TB/queue"
    subst conf/mxsec.conf TB UNBOUND_ADDR > "$TB/mxsec.conf"
    subst conf/env.sh TB TB_Q="$(printf %q "$TB")" NSD_ADDR UNBOUND_ADDR REFUSED_ADDR NOVAL_ADDR NGINX_ADDR \
        SMTP_DANE_ADDR SMTP_INSECURE_ADDR SMTP_STS_ADDR "${SCRIPTED_VARS[@]}" > "$TB/env.sh"
}

# ---- readiness probes ----
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
}

cmd_start() {
    local t0=$SECONDS
    BULK=${TB_BULK:-0}   # benchmark domains bN.dane.test and bN.sts.test, N = 1..TB_BULK
    [[ $BULK =~ ^[0-9]+$ ]] || die "TB_BULK must be a number"
    TB=$(resolve_dir "${1:-}")
    prepare_dir
    check_ports
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
    start_daemons
    START_OK=1
    trap - EXIT
    msg "test bed running in $TB ($((SECONDS - t0)) s): source $TB/env.sh; mxsec --config $TB/mxsec.conf"
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
    *)       usage ;;
esac
