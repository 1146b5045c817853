# postfix.sh - part of tools/testbed/testbed.sh, sourced by it (not run alone):
# the private Postfix instance (the honest receiving MTA) and the files for mxsec and scripts.
# It uses the address plan, TB (the test bed directory), HERE, run, subst, msg and die of testbed.sh.

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
    # tools/bench/queue_bench.sh SINK=discard: mail to qbench-discard@ any domain is logged by its
    # Subject and discarded (main.cf transport_maps, header_checks); no test sends to that name.
    echo '/^qbench-discard@/ discard:' > "$B/etc/transport"
    echo '/^Subject: qbench-discard / WARN' > "$B/etc/header_checks"
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
