# web.sh - part of tools/testbed/testbed.sh, sourced by it (not run alone):
# the MTA-STS policies (www/) and the nginx that serves them.
# It uses the address plan, TB (the test bed directory), HERE, run, subst, msg and die of testbed.sh.

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
    # In a file of its own, included: with thousands of bulk domains the lines would exceed what one
    # argument to sed may hold (subst).
    web_cert_conf > "$n/web-certs.conf"
    subst conf/nginx.conf TB NGINX_ADDR HTTPS_PORT USER="$user" WEB_CERT_CONF="    include $n/web-certs.conf;" \
        > "$n/nginx.conf"
    run nginx -t -q -p "$n/" -e "$n/error.log" -c "$n/nginx.conf"
}
