# pki.sh - part of tools/testbed/testbed.sh, sourced by it (not run alone):
# the private CA and the certificates of the test bed (pki/ in DIR), and the TLSA data taken from them.
# It uses the address plan, TB (the test bed directory), HERE, run, subst, msg and die of testbed.sh.

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
