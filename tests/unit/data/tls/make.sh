#!/bin/sh
# make.sh - regenerates the certificates used by tests/unit/tls_verify_test.cc.
#
# The tests do not run this: the PEM files and digests.txt it writes are
# committed, so the tests never depend on certtool or on the day they run.
# Run it by hand (certtool from gnutls-bin, openssl) only to change the set;
# every certificate then changes, and so does digests.txt.
#
# Private keys live in a temporary directory and are thrown away: nothing
# here needs them after signing, and a repository holds no keys.
#
# What is made (all ECDSA P-256; "valid" means expiration_days = 36500):
#   root.pem                 CA "mxsec test root", self-signed, valid
#   intermediate.pem         CA signed by root, valid
#   leaf.pem                 mx.example.org (SAN dNSName mx.example.org and
#                            iPAddress 192.0.2.1) signed by intermediate
#   wildcard.pem             SAN *.example.net, signed by intermediate
#   nosan.pem                CN nosan.example.org only, signed by intermediate
#   selfsigned-expired.pem   mx.example.org, self-signed, 2020-01-01..2021-01-01
#   expired.pem              mx.example.org, signed by root, 2020-01-01..2021-01-01
#   intermediate-expired.pem CA signed by root, 2020-01-01..2021-01-01
#   under-expired-int.pem    mx.example.org, valid, signed by intermediate-expired
#   attacker-ca.pem          self-signed CA with the SAME subject DN as root
#                            but its own key (a forger's best try)
#   attacker-leaf.pem        mx.example.org signed by attacker-ca
#   old-root.pem             self-signed CA "mxsec old root", valid
#   root-cross-expired.pem   root's subject and key, signed by old-root and
#                            expired (like a stale cross-signed root that
#                            servers keep sending)
# digests.txt lines: "<file> <cert|spki> <sha256|sha512> <lowercase hex>",
# computed with openssl so the tests check the module against another tool.
set -eu
set -f  # "*.example.net" is a name, not a pattern

cd "$(dirname "$0")"
out=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

key() {
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$tmp/$1.key" 2>/dev/null
}

ca_template() { # name cn [activation expiration]
  {
    echo "cn = \"$2\""
    echo "organization = \"mxsec tests\""
    echo "ca"
    echo "cert_signing_key"
    echo "crl_signing_key"
    if [ $# -ge 4 ]; then
      echo "activation_date = \"$3\""
      echo "expiration_date = \"$4\""
    else
      echo "expiration_days = 36500"
    fi
  } > "$tmp/$1.tmpl"
}

server_template() { # name cn "dns names" "ip addresses" [activation expiration]
  {
    echo "cn = \"$2\""
    echo "organization = \"mxsec tests\""
    for n in $3; do echo "dns_name = \"$n\""; done
    for a in $4; do echo "ip_address = \"$a\""; done
    echo "tls_www_server"
    echo "signing_key"
    if [ $# -ge 6 ]; then
      echo "activation_date = \"$5\""
      echo "expiration_date = \"$6\""
    else
      echo "expiration_days = 36500"
    fi
  } > "$tmp/$1.tmpl"
}

self_signed() { # name
  certtool --generate-self-signed --load-privkey "$tmp/$1.key" --template "$tmp/$1.tmpl" \
           --outfile "$out/$1.pem" 2>/dev/null
}

signed_by() { # name issuer-name [key-name]
  k=${3:-$1}
  certtool --generate-certificate --load-privkey "$tmp/$k.key" \
           --load-ca-certificate "$out/$2.pem" --load-ca-privkey "$tmp/$2.key" \
           --template "$tmp/$1.tmpl" --outfile "$out/$1.pem" 2>/dev/null
}

old_from="2020-01-01 00:00:00 UTC"
old_until="2021-01-01 00:00:00 UTC"

key root; ca_template root "mxsec test root"; self_signed root
key intermediate; ca_template intermediate "mxsec test intermediate"; signed_by intermediate root
key leaf; server_template leaf mx.example.org mx.example.org 192.0.2.1; signed_by leaf intermediate
key wildcard; server_template wildcard wildcard.example.net '*.example.net' ''; signed_by wildcard intermediate
key nosan; server_template nosan nosan.example.org '' ''; signed_by nosan intermediate
key selfsigned-expired
server_template selfsigned-expired mx.example.org mx.example.org '' "$old_from" "$old_until"
self_signed selfsigned-expired
key expired; server_template expired mx.example.org mx.example.org '' "$old_from" "$old_until"
signed_by expired root
key intermediate-expired
ca_template intermediate-expired "mxsec expired intermediate" "$old_from" "$old_until"
signed_by intermediate-expired root
key under-expired-int; server_template under-expired-int mx.example.org mx.example.org ''
signed_by under-expired-int intermediate-expired
key attacker-ca; ca_template attacker-ca "mxsec test root"; self_signed attacker-ca
key attacker-leaf; server_template attacker-leaf mx.example.org mx.example.org ''
signed_by attacker-leaf attacker-ca
key old-root; ca_template old-root "mxsec old root"; self_signed old-root
ca_template root-cross-expired "mxsec test root" "$old_from" "$old_until"
signed_by root-cross-expired old-root root

set +f
# Keep only the PEM block (certtool prefixes a text dump).
for f in "$out"/*.pem; do
  sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' "$f" > "$tmp/strip" && mv "$tmp/strip" "$f"
done

: > "$out/digests.txt"
for f in "$out"/*.pem; do
  name=$(basename "$f")
  openssl x509 -in "$f" -outform DER > "$tmp/cert.der"
  openssl x509 -in "$f" -pubkey -noout | openssl pkey -pubin -outform DER > "$tmp/spki.der"
  for what in cert spki; do
    for alg in sha256 sha512; do
      hex=$(openssl dgst -"$alg" -r "$tmp/$what.der" | cut -d' ' -f1)
      echo "$name $what $alg $hex" >> "$out/digests.txt"
    done
  done
done
echo "wrote $(ls "$out"/*.pem | wc -l) certificates and digests.txt to $out"
