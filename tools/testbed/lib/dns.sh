# dns.sh - part of tools/testbed/testbed.sh, sourced by it (not run alone):
# the zones (zones/*.zone filled in), their keys and signatures, and the nsd/unbound configurations.
# It uses the address plan, TB (the test bed directory), HERE, run, subst, msg and die of testbed.sh.

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
