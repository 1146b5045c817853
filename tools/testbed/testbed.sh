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
# What it is. Real servers on 127.0.0.0/8, nothing faked, nothing outside DIR (pid files, logs, keys,
# zones, temp paths, mail all live in DIR; needs root for ports 25/53/443; DIR gets mode go+x so that
# Postfix's unprivileged processes can reach DIR/postfix):
#   - nsd, authoritative for the private TLD test. and its children. The signed zones are signed at every
#     start with fresh ECDSAP256SHA256 keys (KSK + ZSK per zone, NSEC), signatures valid from an hour ago
#     for 30 days; bogus.test is signed with signatures that expired in 2020. (The DNSSEC variants below say
#     where they differ: NSEC3, other algorithms.)
#   - a second nsd without zones: it answers REFUSED to everything (a delegation to it is lame, so
#     unbound returns SERVFAIL at once: the "indeterminate" case). Exception: it hosts rrsigstrip.test, which is
#     reached only through the RRSIG-stripping proxy below.
#   - unbound, validating, trust anchor = DS of the test. KSK (DIR/dns/test-anchor.ds), cache TTLs capped
#     at 5 s, EDE on, remote control on the unix socket DIR/dns/unbound.ctl. This is mxsec's resolver.
#   - a second unbound with validation OFF (module-config "iterator", no trust anchor, same stub zone, remote
#     control on DIR/dns/unbound-noval.ctl): a resolver that lies by omission. It answers bogus.test with data
#     and never sets AD; mxsec's resolver self-check must notice (tests: -o dns_resolver=127.0.53.4).
#   - dns_strip_proxy.py (tools/testbed, /usr/bin/python3): a UDP forwarder to the second nsd that deletes every
#     RRSIG from the replies (log DIR/dns/strip.log): the only way to rrsigstrip.test, whose DS is in test. (The
#     second nsd hosts that one zone; it must not be on the first nsd, which unbound asks for all of test.)
#   - nginx serving https://mta-sts.<domain>/.well-known/mta-sts.txt from DIR/www/<domain>/.well-known/
#     with a certificate (DIR/pki/web.pem) from the private CA DIR/pki/ca.pem (generated at start).
#   - Postfix, a private instance (config DIR/postfix/etc, queue DIR/postfix/spool, log DIR/postfix/maillog,
#     chroot off), the honest receiving MTA: three smtpd listeners (master.cf services named ADDR:25) on
#     127.0.55.1/.2/.3, STARTTLS offered (smtpd_tls_security_level = may), SMTPUTF8 and 8BITMIME on, every
#     recipient domain accepted (virtual_mailbox_domains = static:all) and delivered by virtual(8) to ONE
#     catch-all Maildir: DIR/postfix/mail/catchall/{new,cur}/ (one file per recipient, with Return-Path:
#     <sender> and Delivered-To: <recipient> prepended). Which listener took a message: each has its own
#     myhostname, named in the smtpd Received: header, "by dane.postfix.testbed" (127.0.55.1, cert
#     mx-ee-chain.pem), "by insecure.postfix.testbed" (127.0.55.2, mx-insecure-chain.pem), "by
#     sts.postfix.testbed" (127.0.55.3, mx-sts-chain.pem; bulk names by SNI, tls_server_sni_maps). That header
#     also says whether TLS was used: "(using TLSv1.3 with cipher ...)" and "with ESMTPS" (smtpd_tls_received_
#     header = yes); without TLS it says "with ESMTP" and has no "using" clause.
#   - smtp_server.py (tools/testbed, /usr/bin/python3, one process): scripted SMTP servers on 127.0.56.1-8:25,
#     one behaviour per address (table below). Each records every message it accepts (after the final "."
#     and its 250) as DIR/smtp/<mode>/<n>.json = {"mail_from", "rcpt_to", "data" (un-dot-stuffed, latin-1
#     decoded), "tls", "tls_version", "tls_cipher", "sni", "peer", "helo", "mail_params", "rcpt_params" (one
#     list per recipient), ...}; log DIR/smtp/server.log. They do not announce DSN (RFC 3461) in EHLO; the
#     Postfix listeners do (Postfix's default): a NOTIFY=SUCCESS recipient there gets Postfix's own
#     "Action: delivered" report, sent to the envelope sender (also into the catch-all Maildir).
#
# Address plan (fixed; defined once below):
#   127.0.53.1:53    nsd (authoritative): test. dane.test bogus.test insecure.test sts.test; ns.test; nsec3.test
#                    unsigned.nsec3.test optout.test child.optout.test dsbad.test wrongkey.test unsupalg.test
#                    rsasha256.test rsasha512.test ecdsap384.test ed25519.test ed448.test rsamd5.test dsa.test
#                    (DNSSEC variants)
#   127.0.53.2:53    unbound (validating resolver)     mxsec.conf: dns_resolver = 127.0.53.2
#   127.0.53.3:53    nsd, REFUSED for all but          dead.dane.test; also hosts rrsigstrip.test (through
#                    rrsigstrip.test                   the stripping proxy only)
#   127.0.53.4:53    unbound, NOT validating           resolver self-check tests (dnssec_probe answered, no AD)
#   127.0.53.5:53    dns_strip_proxy.py (UDP)          ns-strip.test: rrsigstrip.test's answers (from the nsd at
#                                                      127.0.53.3, its only host) without RRSIGs
#   127.0.54.1:443   nginx (MTA-STS policies)          mta-sts.*.sts.test, mta-sts.both.dane.test
#   127.0.54.2:443   (none; test_tlsrpt.py starts an   tlsrpt.sts.test: rua of _smtp._tls.enforce.sts.test
#                    HTTPS report receiver there)
#   127.0.54.3-5:443 (none; test_tlsrpt.py: TLS, no    tlsrpt-hang.sts.test: rua of _smtp._tls.hang.sts.test
#                    answer)
#   127.0.54.10-29:443 (none; test_tlsrpt.py: silent   tlsrpt-many.sts.test: rua of _smtp._tls.many.sts.test
#                    TCP)
#   127.0.55.1:25    Postfix, DANE hosts               mx.ee/mx.ta/mx.unusable/mx.tlsafail/plain/nomx/mx.bK.dane.test,
#                                                      alias.mxcname2.dane.test, mx.bogus.test, probe.bogus.test;
#                                                      cert mx-ee (SANs: each of those names but bulk, probe)
#   127.0.55.2:25    Postfix, insecure zone            mx.insecure.test; cert mx-insecure
#   127.0.55.3:25    Postfix, MTA-STS hosts            every MX host under sts.test not listed below; cert mx-sts
#                                                      (bulk mx.bK.sts.test: mx-sts-bulkC by SNI)
#   127.0.56.1:25    scripted nostarttls: no STARTTLS  mx.strip.dane.test, mx.ustrip.dane.test, mx.strip.insecure.test,
#                    in EHLO, mail accepted in clear   mx.strip.sts.test, mx.tstrip.sts.test
#   127.0.56.2:25    scripted inject: STARTTLS → "220 mx.inject.dane.test, mx.inject.insecure.test
#                    ...\r\n250 2.0.0 injected" in one write, then TLS (mx-ee chain), serves normally
#   127.0.56.3:25    scripted greet421: "421 4.3.2" at connect     mx.greet.insecure.test
#   127.0.56.4:25    scripted rcpt: STARTTLS (mx-ee); RCPT defer* → 451 4.2.0, reject* → 550 5.1.1, else 250
#                                                      mx.rcpt.dane.test, mx.rcpt.insecure.test
#                    later* → 451 the first time per address, then 250; stall* → no reply after the
#                    final "." of the first message to that address (tests of the sendmail queue)
#   127.0.56.5:25    scripted silent: never says a word             mx.silent.dane.test, mx.silent.insecure.test
#   127.0.56.6:25    scripted hsfail: STARTTLS → 220, then "this is not TLS" and close; plaintext mail works
#                                                      mx.hsfail.dane.test, mx.hsfail.insecure.test
#   127.0.56.7:25    scripted wrongname: STARTTLS, cert wrong.example.net + CA (valid, CA-signed)
#                                                      mx.wrongname.dane.test, mx.failover.dane.test,
#                                                      mx.wrongname.insecure.test, mx.wrongname.sts.test
#   127.0.56.8:25    scripted expired: STARTTLS, cert mx.expired.sts.test + mx.expired.dane.test + CA, valid
#                    2020-01-01 to 2021-01-01          mx.expired.dane.test, mx.expired.sts.test
#
# Files in DIR: mxsec.conf (config for mxsec against this bed), env.sh (TB_DIR TB_NSD TB_UNBOUND
# TB_REFUSED TB_NGINX TB_CA TB_SMTP_DANE TB_SMTP_INSECURE TB_SMTP_STS TB_CONF TB_MAILDIR TB_MAILLOG
# TB_POSTFIX_ETC TB_SCRIPTED and TB_SCRIPTED_<MODE> = address of each scripted server), state/ queue/ (mxsec),
# pki/ (ca.pem ca.key; for each of mx-ee mx-ta mx-sts mx-insecure wrongname expired: NAME.pem NAME.key
# NAME-chain.pem (leaf + CA); web.{pem,key}; tlsa.txt), dns/ (zones, keys, nsd/unbound configs, pid files and
# logs), nginx/ (config, pid, logs), www/<domain>/.well-known/mta-sts.txt (tests may overwrite these),
# postfix/ (etc/ spool/ data/ mail/catchall/ maillog), smtp/ (server.pid server.log <mode>/<n>.json),
# setup.log (output of the tools).
#
# Expected decisions of a correct DANE/MTA-STS client (vocabulary of `mxsec policy --json`:
# policy must-tls|opportunistic|defer|fail, mechanism dane|mta-sts|none, per host tls
# dane|encrypt|pkix|may|skip). The integration tests are written against this table.
#
# --- DANE: dane.test is signed and delegated securely from test. ------------------------------------
# domain                policy (mechanism)       hosts: pref name = tls        why
# ee.dane.test          must-tls (dane)          10 mx.ee.dane.test = dane     secure MX and A; TLSA 3 1 1 <sha256 mx-ee
#                                                                              SPKI> + 3 0 2 <sha512 mx-ee cert>
# ta.dane.test          must-tls (dane)          10 mx.ta.dane.test = dane     TLSA 2 0 1 <sha256 CA cert>; the server must
#                                                                              send leaf+CA (mx-ta-chain.pem), name mx.ta.dane.test
# unusable.dane.test    must-tls (dane)          10 mx.unusable.dane.test =    secure TLSA 1 1 1, 0 0 1, 4 1 1: present but
#                                                   encrypt                    none usable → TLS required, not authenticated
# tlsafail.dane.test    defer (dane)             10 mx.tlsafail.dane.test =    TLSA lookup SERVFAIL (lame delegation of
#                                                   skip                       _tcp.mx.tlsafail to the REFUSED server):
#                                                                              indeterminate → host unusable, none left
# mxinsecure.dane.test  opportunistic (none)     10 mx.insecure.test = may     MX secure, host address insecure → no TLSA
#                                                                              lookup; no MTA-STS TXT
# mxcname.dane.test     must-tls (dane)          10 alias.mxcname.dane.test =  host CNAME → mx.ee.dane.test, all secure:
#                                                   dane                       TLSA at the expanded name, base mx.ee.dane.test
# mxcname2.dane.test    must-tls (dane)          10 alias.mxcname2.dane.test = CNAME → plain.dane.test (A 127.0.55.1), no
#                                                   dane                       TLSA there (secure NXDOMAIN) → falls back to
#                                                                              _25._tcp.alias.mxcname2 (3 1 1 mx-ee): base and
#                                                                              SNI alias.mxcname2.dane.test
# cname.dane.test       must-tls (dane)          10 mx.ee.dane.test = dane     the domain is a CNAME → ee.dane.test (MX lookup
#                                                                              follows it; mx_cname_chain [ee.dane.test])
# b.dn.dane.test        must-tls (dane)          10 mx.b.dn.dane.test = dane   DNAME dn.dane.test → dname.nsec3.test (signed,
#                                                                              NSEC3): MX, host address (mx.b.dname.nsec3.test)
#                                                                              and TXT are reached through the signed DNAME and
#                                                                              the unsigned CNAME synthesized from it (RFC 6672);
#                                                                              TLSA 3 1 1 at _25._tcp.mx.b.dname.nsec3.test
# b.dnins.dane.test     opportunistic (none)     10 mx.insecure.test = may     signed DNAME dnins.dane.test → dnt.insecure.test:
#                                                                              into the insecure zone, MX 10 mx (TLSA ignored)
# nullmx.dane.test      fail 5.1.10              (none)                        null MX "0 .": no address lookups
# nomx.dane.test        must-tls (dane)          0 nomx.dane.test = dane       secure NODATA for MX → implicit MX; A secure;
#                                                                              TLSA 3 1 1 at _25._tcp.nomx.dane.test
# noaddr.dane.test      fail 5.4.4               10 missing.dane.test (no      the only MX host does not exist (secure
#                                                   address)                   NXDOMAIN): no route
# both.dane.test        must-tls (dane)          10 mx.ee.dane.test = dane     DANE wins over MTA-STS; the enforce policy
#                                                                              (TXT id both1, mx mx.ee.dane.test) is valid too
#                                                                              (mta_sts mode enforce)
# backup.dane.test      opportunistic            10 mx.ee.dane.test = dane,    DANE is per host: a backup MX without DANE
#                                                20 mx.insecure.test = may     makes the domain opportunistic
# mixed.dane.test       must-tls (dane)          10 mx.ee.dane.test = dane,    the TLSA failure takes mx.tlsafail out; the
#                                                20 mx.tlsafail.dane.test =    only usable host requires DANE → must-tls
#                                                   skip
# nosuch.dane.test      fail 5.1.2               (none)                        secure NXDOMAIN (any other name too)
# strip.dane.test       must-tls (dane)          10 mx.strip.dane.test = dane  TLSA 3 1 1 mx-ee; host 127.0.56.1 offers no
#                                                                              STARTTLS (downgrade)
# ustrip.dane.test      must-tls (dane)          10 mx.ustrip.dane.test =      only TLSA 1 1 1 (unusable); host 127.0.56.1
#                                                   encrypt                    offers no STARTTLS
# inject.dane.test      must-tls (dane)          10 mx.inject.dane.test = dane TLSA 3 1 1 mx-ee; 127.0.56.2 injects a reply
# hsfail.dane.test      must-tls (dane)          10 mx.hsfail.dane.test = dane TLSA 3 1 1 mx-ee; 127.0.56.6 breaks the handshake
# wrongname.dane.test   must-tls (dane)          10 mx.wrongname.dane.test =   TLSA 2 0 1 CA; 127.0.56.7 sends a CA-signed
#                                                   dane                       cert for wrong.example.net (name check fails)
# expired.dane.test     must-tls (dane)          10 mx.expired.dane.test =     TLSA 3 1 1 <SPKI of the expired cert>;
#                                                   dane                       127.0.56.8 (DANE-EE ignores dates)
# failover.dane.test    must-tls (dane)          10 mx.failover.dane.test =    mx.failover: 127.0.56.7 with TLSA 3 1 1 mx-ee
#                                                   dane, 20 mx.ee.dane.test   (no match with the wrongname cert); the
#                                                   = dane                     backup is the good Postfix host
# rcpt.dane.test        must-tls (dane)          10 mx.rcpt.dane.test = dane   TLSA 3 1 1 mx-ee; 127.0.56.4 (451/550 by RCPT)
# silent.dane.test      must-tls (dane)          10 mx.silent.dane.test = dane TLSA 3 1 1 mx-ee; 127.0.56.5 never answers
# notlsa.dane.test      opportunistic (none)     10 mx.notlsa.dane.test = may  secure A, no TLSA: secure NXDOMAIN for
#                                                                              _25._tcp.mx.notlsa (NSEC proof)
# nodata.dane.test      opportunistic (none)     10 mx.nodata.dane.test = may  secure A; _25._tcp.mx.nodata has only a TXT:
#                                                                              secure NODATA for its TLSA (NSEC proof)
# --- other zones under test. ---------------------------------------------------------------------------
# bogus.test            defer (dnssec bogus)     (none)                        DS in test. but the zone's RRSIGs expired
#                                                                              (EDE 7 Signature Expired); with +cd: MX 10
#                                                                              mx.bogus.test, TLSA 3 1 1 at _25._tcp.mx.bogus.test
# probe.bogus.test      (A lookup is bogus)                                    a name that must fail validation:
#                                                                              mxsec.conf dnssec_probe (self-check;
#                                                                              dnssec_probe_secure = test, AD expected)
# insecure.test         opportunistic (none)     10 mx.insecure.test = may     provably insecure (NS, no DS): its TLSA 3 1 1
#                                                                              must be ignored (tlsa [])
# strip.insecure.test   opportunistic (none)     10 mx.strip.insecure.test =   127.0.56.1 (no STARTTLS); likewise, each with
#                                                   may                        MX 10 mx.<name>: inject.insecure.test
#                                                                              127.0.56.2, greet.insecure.test .3, rcpt.
#                                                                              insecure.test .4, silent.insecure.test .5,
#                                                                              hsfail.insecure.test .6, wrongname.insecure.test .7
# ee.dnsec.insecure.test opportunistic (none)    10 mx.ee.dane.test = may      unsigned DNAME dnsec.insecure.test → dane.test:
#                                                                              the MX of ee.dane.test, but the DNAME hop is
#                                                                              insecure, so is the MX answer (no TLSA lookup)
# nosuch.test           fail 5.1.2               (none)                        secure NXDOMAIN, dnssec secure
# --- DNSSEC variants: signed zones under test. with DS unless said -------------------------------
# nsec3.test            must-tls (dane)          10 mx.nsec3.test = dane       zone signed with NSEC3 (SHA-1, 0 iterations)
# unsigned.nsec3.test   opportunistic (none)     10 mx.unsigned.nsec3.test     insecure delegation (NS, no DS) proven by
#                                                   = may                      NSEC3; its TLSA 3 1 1 must be ignored
# wild.nsec3.test       must-tls (dane)          10 mx.wild.nsec3.test = dane  TLSA from the wildcard *._tcp.mx.wild
# cnins.nsec3.test      opportunistic (none)     10 alias.cnins.nsec3.test =   secure MX, host CNAME into the insecure
#                                                   may                        unsigned.nsec3.test: no DANE
# nosuch.nsec3.test     fail 5.1.2               (none)                        NXDOMAIN proven by NSEC3, dnssec secure
# notlsa.nsec3.test     opportunistic (none)     10 mx.notlsa.nsec3.test = may like notlsa.dane.test (TLSA NXDOMAIN), NSEC3
# nodata.nsec3.test     opportunistic (none)     10 mx.nodata.nsec3.test = may like nodata.dane.test (TLSA NODATA), NSEC3
# optout.test           must-tls (dane)          10 mx.optout.test = dane      NSEC3 with opt-out
# child.optout.test     opportunistic (none)     10 mx.child.optout.test = may insecure delegation with no NSEC3 of its own,
#                                                                              covered by an opt-out span (RFC 5155 §6)
# dsbad.test            defer (dnssec bogus)     (none)                        the DS in test. matches no DNSKEY
# wrongkey.test         defer (dnssec bogus)     (none)                        DNSKEY set valid, but the data is signed by
#                                                                              a key that is not in it
# unsupalg.test         opportunistic (none)     10 mx.unsupalg.test = may     signed, but the DS names algorithm 253:
#                                                                              unsupported → insecure; TLSA ignored
# rsasha256.test        must-tls (dane)          10 mx.rsasha256.test = dane   one zone per algorithm, one key (CSK; RSA
#   rsasha512.test, ecdsap384.test,                                            2048 bits): RSASHA256 (8), RSASHA512 (10),
#   ed25519.test, ed448.test: the same                                         ECDSAP384SHA384 (14, DS digest SHA-384),
#                                                                              ED25519 (15), ED448 (16); mx.<zone> A
#                                                                              127.0.55.1, TLSA 3 1 1 mx-ee
# rsamd5.test           opportunistic (none)     10 mx.rsamd5.test = may       really signed with RSAMD5 (1), DS with a
#                                                                              SHA-256 digest: RFC 8624 MUST NOT validate
#                                                                              → insecure (unbound too); TLSA ignored;
#                                                                              mx.rsamd5.test A 127.0.55.2
# dsa.test              opportunistic (none)     10 mx.dsa.test = may          the same with DSA (3)
# rrsigstrip.test       defer (dnssec bogus)     (none)                        signed, DS in test., but delegated to
#                                                                              127.0.53.5 (ns-strip.test), a proxy that
#                                                                              deletes every RRSIG: stripped signatures
#                                                                              are bogus, never insecure
# --- MTA-STS: sts.test is unsigned (insecure, no DANE anywhere); MX hosts A 127.0.55.3, mta-sts.X A
#     127.0.54.1; mx patterns of valid policies cover the MX hosts; max_age 86400 unless said. ------------
# enforce.sts.test      must-tls (mta-sts)       10 mx1.enforce.sts.test = pkix, id enf1; mode enforce; mx mx1.enforce.sts.test,
#                                                20 mx2.enforce.sts.test = pkix  mx *.enforce.sts.test; CRLF line ends
# testing.sts.test      opportunistic (none)     10 mx.testing.sts.test = may  id tst1; mode testing (evaluate, report only)
# none.sts.test         opportunistic (none)     10 mx.none.sts.test = may     id none1; mode none, no mx lines, LF line ends
# wildcard.sts.test     must-tls (mta-sts)       10 a.wildcard.sts.test = pkix, id wc1; only mx *.wildcard.sts.test: one
#                                                20 b.c.wildcard.sts.test = skip, label only, the apex does not match
#                                                30 wildcard.sts.test = skip
# redirect.sts.test     opportunistic (none)     10 mx.redirect.sts.test = may fetch fails: 301 to mta-sts.enforce.sts.test
# ctype.sts.test        opportunistic (none)     10 mx.ctype.sts.test = may    fetch fails: valid body, Content-Type text/html
# big.sts.test          opportunistic (none)     10 mx.big.sts.test = may      fetch fails: 70000-byte body (> 64 KiB cap),
#                                                                              Content-Length sent
# chunked.sts.test      opportunistic (none)     10 mx.chunked.sts.test = may  fetch fails: 70000-byte body sent chunked,
#                                                                              without Content-Length (nginx ssi filter)
# syntax.sts.test       opportunistic (none)     10 mx.syntax.sts.test = may   invalid policy: "mode: enforced", max_age twice
# notfound.sts.test     opportunistic (none)     10 mx.notfound.sts.test = may fetch fails: HTTP 404
# hugeage.sts.test      opportunistic (none)     10 mx.hugeage.sts.test = may  invalid policy: max_age 99999999999 > 31557600
# badtxt.sts.test       opportunistic (none)     10 mx.badtxt.sts.test = may   two TXT records starting v=STSv1 (bad1, bad2):
#                                                                              no policy via DNS, no fetch (error names TXT)
# notxt.sts.test        opportunistic (none)     10 mx.notxt.sts.test = may    no TXT: no MTA-STS at all (mta_sts null), even
#                                                                              though a valid policy file is served
# cached.sts.test       must-tls (mta-sts)       10 mx.cached.sts.test = pkix  id c1 (tests then break the file and set-txt
#                                                                              id c2 / junk: the cached policy still applies)
# idchange.sts.test     must-tls (mta-sts)       10 mx.idchange.sts.test = pkix id i1 (tests rewrite the file and set-txt id
#                                                                              i2: refetch)
# strip.sts.test        must-tls (mta-sts)       10 mx.strip.sts.test = pkix   id str1; enforce; host 127.0.56.1 (no STARTTLS)
# wrongname.sts.test    must-tls (mta-sts)       10 mx.wrongname.sts.test =    id wn1; enforce; host 127.0.56.7 (certificate
#                                                   pkix                       for wrong.example.net)
# expired.sts.test      must-tls (mta-sts)       10 mx.expired.sts.test = pkix id exp1; enforce; host 127.0.56.8 (expired)
# tstrip.sts.test       opportunistic (none)     10 mx.tstrip.sts.test = may   id tstr1; mode testing; host 127.0.56.1
# --- SMTP TLS reporting (RFC 8460): _smtp._tls TXT records (tests/integration/test_tlsrpt.py) ---------------
# _smtp._tls.ee.dane.test         "v=TLSRPTv1; rua=mailto:tlsrpt@ee.dane.test"          (signed zone)
# _smtp._tls.wrongname.sts.test   "v=TLSRPTv1; rua=mailto:tlsrpt@enforce.sts.test"
# _smtp._tls.enforce.sts.test     "v=TLSRPTv1; rua=https://tlsrpt.sts.test/v1/report"   tlsrpt.sts.test A 127.0.54.2
# _smtp._tls.expired.sts.test     two v=TLSRPTv1 records (a@, b@enforce.sts.test): RFC 8460 §3, no reporting
# _smtp._tls.hang.sts.test        "v=TLSRPTv1; rua=https://tlsrpt-hang.sts.test/v1/report"  A 127.0.54.3-5
#                                 (test_tlsrpt.py: TLS handshake, then never an answer)
# _smtp._tls.many.sts.test        "v=TLSRPTv1; rua=https://tlsrpt-many.sts.test/v1/report"  20 A 127.0.54.10-29
#                                 (test_tlsrpt.py: connections accepted, never a byte)
#
# --- Delivery: the outcome a correct client reaches (`mxsec deliver`, tests/integration/test_deliver.py). ---
#     "TLS" = STARTTLS used; verify dane|pkix|none = how the certificate was checked. Exit 75 = deferred.
# domain                  outcome                                  receiving end / why
# ee.dane.test            delivered, TLS, verify dane              Postfix 127.0.55.1 (dane.postfix.testbed)
# ta.dane.test            delivered, TLS, verify dane              Postfix 127.0.55.1 (DANE-TA: chain leaf + CA)
# unusable.dane.test      delivered, TLS, verify none              Postfix 127.0.55.1 (encrypt)
# mxcname, mxcname2, cname, nomx, both, backup, mixed (.dane.test): delivered, TLS, verify dane, Postfix 127.0.55.1
# mxinsecure.dane.test    delivered, TLS (opportunistic)           Postfix 127.0.55.2 (insecure.postfix.testbed)
# insecure.test           delivered, TLS, verify none              Postfix 127.0.55.2
# enforce.sts.test        delivered, TLS, verify pkix              Postfix 127.0.55.3 (sts.postfix.testbed)
# other sts.test domains at 127.0.55.3: delivered over TLS (pkix where the policy is enforce, else opportunistic)
# tlsafail.dane.test      deferred (75)                            no usable MX host (TLSA indeterminate)
# bogus.test              deferred (75)                            DNSSEC bogus
# nullmx.dane.test        bounced 5.1.10 (69)                      null MX
# noaddr.dane.test        bounced 5.4.4 (69)                       no address for the only MX
# nosuch.test             bounced 5.1.2 (68)                       NXDOMAIN (also nosuch.dane.test)
# strip.dane.test         deferred 4.7.4 (75), nothing sent        127.0.56.1 offers no STARTTLS: downgrade (RFC 8460
#                                                                  failure type starttls-not-supported)
# ustrip.dane.test        deferred (75), nothing sent              same; unusable TLSA still demand TLS
# inject.dane.test        deferred (75), nothing sent              127.0.56.2: bytes after the STARTTLS 220 → abort
# inject.insecure.test    deferred (75), nothing sent              injection ends the session whatever the policy
# hsfail.dane.test        deferred (75), nothing sent              127.0.56.6: handshake fails, no cleartext under DANE
# hsfail.insecure.test    delivered in plaintext                   127.0.56.6: handshake fails, then (RFC 7435) a new
#                                                                  connection without STARTTLS
# wrongname.dane.test     deferred (75), nothing sent              DANE-TA: CA matches, name wrong.example.net does not
# wrongname.sts.test      deferred (75), nothing sent              PKIX name mismatch (certificate-host-mismatch)
# wrongname.insecure.test delivered, TLS, verify none              127.0.56.7: opportunistic TLS does not check names
# expired.dane.test       delivered, TLS, verify dane              127.0.56.8: DANE-EE ignores dates
# expired.sts.test        deferred (75), nothing sent              PKIX: certificate expired (certificate-expired)
# failover.dane.test      delivered, TLS, verify dane, at Postfix  MX 10 (127.0.56.7) fails DANE-EE, MX 20 mx.ee
#                         127.0.55.1; nothing at 127.0.56.7
# strip.sts.test          deferred (75), nothing sent              enforce requires STARTTLS (starttls-not-supported)
# tstrip.sts.test         delivered in plaintext                   127.0.56.1; mode testing does not enforce
# strip.insecure.test     delivered in plaintext                   127.0.56.1
# greet.insecure.test     deferred (75)                            127.0.56.3: 421 greeting
# silent.insecure.test    deferred (75)                            127.0.56.5: greeting timeout (silent.dane.test too)
# rcpt.insecure.test      ok@ delivered, defer*@ deferred 4.2.0,   127.0.56.4 over TLS; one run with all three → 75;
#                         reject*@ bounced 5.1.1                   reject@ alone → 67 (rcpt.dane.test: same, dane)
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
SCRIPTED_MODES=(nostarttls inject greet421 rcpt silent hsfail wrongname expired)
declare -A SCRIPTED=([nostarttls]=127.0.56.1 [inject]=127.0.56.2 [greet421]=127.0.56.3 [rcpt]=127.0.56.4
                     [silent]=127.0.56.5 [hsfail]=127.0.56.6 [wrongname]=127.0.56.7 [expired]=127.0.56.8)
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

MARKER=.mxsec-testbed
ZONE_TTL=300
# sts.test domains that get MX + TXT + mta-sts A records and a policy directory
STS_DOMAINS=(enforce testing none wildcard redirect ctype big chunked syntax notfound cached idchange badtxt hugeage notxt
             strip wrongname expired tstrip)
# zones signed with one algorithm each, label under test. -> ldns-keygen algorithm (KSK + ZSK)
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

hex32() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

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

sts_mx() {  # sts.test domain label -> "pref host" lines of its MX RRset
    local x=$1 s=sts.test
    case $x in
        enforce)  echo "10 mx1.$x.$s"; echo "20 mx2.$x.$s" ;;
        wildcard) echo "10 a.$x.$s"; echo "20 b.c.$x.$s"; echo "30 $x.$s" ;;
        *)        echo "10 mx.$x.$s" ;;
    esac
}

sts_addr() {  # sts.test domain label -> address of its MX hosts
    case $1 in
        strip|tstrip) echo "${SCRIPTED[nostarttls]}" ;;
        wrongname)    echo "${SCRIPTED[wrongname]}" ;;
        expired)      echo "${SCRIPTED[expired]}" ;;
        *)            echo "$SMTP_STS_ADDR" ;;
    esac
}

make_pki() {
    local p=$TB/pki
    mkdir -p "$p/tmpl"
    cat > "$p/tmpl/ca.tmpl" <<'EOF'
cn = "mxsec test bed CA"
organization = "mxsec test bed"
ca
cert_signing_key
crl_signing_key
expiration_days = 3650
EOF
    run certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$p/ca.key"
    run certtool --generate-self-signed --load-privkey "$p/ca.key" --template "$p/tmpl/ca.tmpl" \
        --outfile "$p/ca.pem"
    make_cert mx-ee mx.ee.dane.test "${DANE_PF_HOSTS[@]}"
    make_cert mx-ta mx.ta.dane.test mx.ta.dane.test
    make_cert mx-insecure mx.insecure.test mx.insecure.test
    make_cert wrongname wrong.example.net wrong.example.net
    CERT_VALIDITY=$'activation_date = "2020-01-01 00:00:00 UTC"\nexpiration_date = "2021-01-01 00:00:00 UTC"' \
        make_cert expired mx.expired.sts.test mx.expired.sts.test mx.expired.dane.test
    # Postfix on $SMTP_STS_ADDR: every MX host of sts.test that has that address
    local sts=() x pref h
    for x in "${STS_DOMAINS[@]}"; do
        [ "$(sts_addr "$x")" = "$SMTP_STS_ADDR" ] || continue
        while read -r pref h; do sts+=("$h"); done < <(sts_mx "$x")
    done
    make_cert mx-sts "${sts[0]}" "${sts[@]}"
    local web=()
    for x in "${STS_DOMAINS[@]}"; do web+=("mta-sts.$x.sts.test"); done
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
    EE_CERT512=$(openssl x509 -in "$p/mx-ee.pem" -outform DER | sha512sum | cut -d' ' -f1)
    CA_CERT256=$(openssl x509 -in "$p/ca.pem" -outform DER | sha256sum | cut -d' ' -f1)
    [ ${#EE_SPKI256} = 64 ] && [ ${#EE_CERT512} = 128 ] && [ ${#CA_CERT256} = 64 ] && [ ${#EXPIRED_SPKI256} = 64 ] ||
        die "could not compute TLSA data from $p/mx-ee.pem / expired.pem / ca.pem"
    printf '%s\n' "mx-ee 3 1 1 $EE_SPKI256" "mx-ee 3 0 2 $EE_CERT512" "ca 2 0 1 $CA_CERT256" \
        "expired 3 1 1 $EXPIRED_SPKI256" > "$p/tlsa.txt"
}

# keygen ZONE [ALGORITHM [csk]]: sets the KSK/ZSK base paths in the globals KSK and ZSK; with csk, only one key
# (KSK flag, ldns-signzone signs every RRset with it when it has no ZSK) and ZSK is empty
keygen() {
    local zone=$1 alg=${2:-ECDSAP256SHA256} k z= bits=()
    case $alg in RSA*) bits=(-b 2048) ;; esac   # ldns-keygen needs a size for RSA
    k=$(cd "$TB/dns/keys" && ldns-keygen -a "$alg" "${bits[@]}" -k "$zone") || die "ldns-keygen $alg failed for $zone"
    if [ "${3:-}" != csk ]; then
        z=$(cd "$TB/dns/keys" && ldns-keygen -a "$alg" "${bits[@]}" "$zone") || die "ldns-keygen $alg failed for $zone"
    fi
    KSK="$TB/dns/keys/$k"
    ZSK=${z:+$TB/dns/keys/$z}
}

soa() {  # origin-relative SOA + NS lines for a zone file with $ORIGIN
    echo "\$TTL $ZONE_TTL"
    echo "@ IN SOA ns.test. hostmaster.test. $SERIAL 3600 600 86400 60"
    echo "@ IN NS ns.test."
}

write_zones() {
    local z=$TB/dns/zones
    mkdir -p "$z" "$TB/dns/keys"

    # dane.test (signed)
    {
        echo "\$ORIGIN dane.test."
        soa
        cat <<EOF
ee                       IN MX    10 mx.ee
mx.ee                    IN A     $SMTP_DANE_ADDR
_25._tcp.mx.ee           IN TLSA  3 1 1 $EE_SPKI256
_25._tcp.mx.ee           IN TLSA  3 0 2 $EE_CERT512
_smtp._tls.ee            IN TXT   "v=TLSRPTv1; rua=mailto:tlsrpt@ee.dane.test"
ta                       IN MX    10 mx.ta
mx.ta                    IN A     $SMTP_DANE_ADDR
_25._tcp.mx.ta           IN TLSA  2 0 1 $CA_CERT256
unusable                 IN MX    10 mx.unusable
mx.unusable              IN A     $SMTP_DANE_ADDR
_25._tcp.mx.unusable     IN TLSA  1 1 1 $(hex32 pkix-ee)
_25._tcp.mx.unusable     IN TLSA  0 0 1 $(hex32 pkix-ta)
_25._tcp.mx.unusable     IN TLSA  4 1 1 $(hex32 usage-4)
tlsafail                 IN MX    10 mx.tlsafail
mx.tlsafail              IN A     $SMTP_DANE_ADDR
_tcp.mx.tlsafail         IN NS    dead.dane.test.
dead                     IN A     $REFUSED_ADDR
mxinsecure               IN MX    10 mx.insecure.test.
mxcname                  IN MX    10 alias.mxcname
alias.mxcname            IN CNAME mx.ee.dane.test.
mxcname2                 IN MX    10 alias.mxcname2
alias.mxcname2           IN CNAME plain.dane.test.
_25._tcp.alias.mxcname2  IN TLSA  3 1 1 $EE_SPKI256
plain                    IN A     $SMTP_DANE_ADDR
cname                    IN CNAME ee.dane.test.
dn                       IN DNAME dname.nsec3.test.
dnins                    IN DNAME dnt.insecure.test.
nullmx                   IN MX    0 .
nomx                     IN A     $SMTP_DANE_ADDR
_25._tcp.nomx            IN TLSA  3 1 1 $EE_SPKI256
noaddr                   IN MX    10 missing.dane.test.
both                     IN MX    10 mx.ee.dane.test.
_mta-sts.both            IN TXT   "v=STSv1; id=both1"
mta-sts.both             IN A     $NGINX_ADDR
backup                   IN MX    10 mx.ee.dane.test.
backup                   IN MX    20 mx.insecure.test.
mixed                    IN MX    10 mx.ee.dane.test.
mixed                    IN MX    20 mx.tlsafail.dane.test.
strip                    IN MX    10 mx.strip
mx.strip                 IN A     ${SCRIPTED[nostarttls]}
_25._tcp.mx.strip        IN TLSA  3 1 1 $EE_SPKI256
ustrip                   IN MX    10 mx.ustrip
mx.ustrip                IN A     ${SCRIPTED[nostarttls]}
_25._tcp.mx.ustrip       IN TLSA  1 1 1 $(hex32 ustrip-pkix-ee)
inject                   IN MX    10 mx.inject
mx.inject                IN A     ${SCRIPTED[inject]}
_25._tcp.mx.inject       IN TLSA  3 1 1 $EE_SPKI256
hsfail                   IN MX    10 mx.hsfail
mx.hsfail                IN A     ${SCRIPTED[hsfail]}
_25._tcp.mx.hsfail       IN TLSA  3 1 1 $EE_SPKI256
wrongname                IN MX    10 mx.wrongname
mx.wrongname             IN A     ${SCRIPTED[wrongname]}
_25._tcp.mx.wrongname    IN TLSA  2 0 1 $CA_CERT256
expired                  IN MX    10 mx.expired
mx.expired               IN A     ${SCRIPTED[expired]}
_25._tcp.mx.expired      IN TLSA  3 1 1 $EXPIRED_SPKI256
failover                 IN MX    10 mx.failover
failover                 IN MX    20 mx.ee.dane.test.
mx.failover              IN A     ${SCRIPTED[wrongname]}
_25._tcp.mx.failover     IN TLSA  3 1 1 $EE_SPKI256
rcpt                     IN MX    10 mx.rcpt
mx.rcpt                  IN A     ${SCRIPTED[rcpt]}
_25._tcp.mx.rcpt         IN TLSA  3 1 1 $EE_SPKI256
silent                   IN MX    10 mx.silent
mx.silent                IN A     ${SCRIPTED[silent]}
_25._tcp.mx.silent       IN TLSA  3 1 1 $EE_SPKI256
notlsa                   IN MX    10 mx.notlsa
mx.notlsa                IN A     $SMTP_DANE_ADDR
nodata                   IN MX    10 mx.nodata
mx.nodata                IN A     $SMTP_DANE_ADDR
_25._tcp.mx.nodata       IN TXT   "a name with no TLSA"
EOF
        # Benchmark domains (TB_BULK=N): bN.dane.test, DANE-EE like ee.dane.test.
        local b
        for ((b = 1; b <= BULK; b++)); do
            echo "b$b IN MX 10 mx.b$b"
            echo "mx.b$b IN A $SMTP_DANE_ADDR"
            echo "_25._tcp.mx.b$b IN TLSA 3 1 1 $EE_SPKI256"
        done
    } > "$z/dane.test.zone"

    # bogus.test (signed with expired signatures)
    {
        echo "\$ORIGIN bogus.test."
        soa
        cat <<EOF
@                        IN MX    10 mx
mx                       IN A     $SMTP_DANE_ADDR
_25._tcp.mx              IN TLSA  3 1 1 $EE_SPKI256
probe                    IN A     $SMTP_DANE_ADDR
EOF
    } > "$z/bogus.test.zone"

    # insecure.test (unsigned, no DS in test.)
    {
        echo "\$ORIGIN insecure.test."
        soa
        cat <<EOF
@                        IN MX    10 mx
mx                       IN A     $SMTP_INSECURE_ADDR
_25._tcp.mx              IN TLSA  3 1 1 $EE_SPKI256
b.dnt                    IN MX    10 mx
dnsec                    IN DNAME dane.test.
EOF
        # scripted servers: NAME.insecure.test MX 10 mx.NAME.insecure.test
        local n
        for n in strip=nostarttls inject=inject greet=greet421 rcpt=rcpt silent=silent hsfail=hsfail \
                 wrongname=wrongname; do
            echo "${n%%=*} IN MX 10 mx.${n%%=*}"
            echo "mx.${n%%=*} IN A ${SCRIPTED[${n#*=}]}"
        done
    } > "$z/insecure.test.zone"

    # sts.test (unsigned). One record per line, fully qualified "OWNER TTL IN TYPE RDATA": set-txt edits it.
    local s=sts.test. x id addr pref h
    {
        echo "$s $ZONE_TTL IN SOA ns.test. hostmaster.test. $SERIAL 3600 600 86400 60"
        echo "$s $ZONE_TTL IN NS ns.test."
        for x in "${STS_DOMAINS[@]}"; do
            addr=$(sts_addr "$x")
            while read -r pref h; do
                echo "$x.$s $ZONE_TTL IN MX $pref $h."
                echo "$h. $ZONE_TTL IN A $addr"
            done < <(sts_mx "$x")
            case $x in
                enforce) id=enf1 ;; testing) id=tst1 ;; none) id=none1 ;; wildcard) id=wc1 ;;
                redirect) id=red1 ;; ctype) id=ct1 ;; big) id=big1 ;; chunked) id=chk1 ;; syntax) id=syn1 ;;
                notfound) id=nf1 ;; cached) id=c1 ;; idchange) id=i1 ;; hugeage) id=huge1 ;; strip) id=str1 ;;
                wrongname) id=wn1 ;; expired) id=exp1 ;; tstrip) id=tstr1 ;; *) id= ;;
            esac
            case $x in
                notxt) ;;
                badtxt)
                    echo "_mta-sts.$x.$s $ZONE_TTL IN TXT \"v=STSv1; id=bad1\""
                    echo "_mta-sts.$x.$s $ZONE_TTL IN TXT \"v=STSv1; id=bad2\"" ;;
                *)  echo "_mta-sts.$x.$s $ZONE_TTL IN TXT \"v=STSv1; id=$id\"" ;;
            esac
            echo "mta-sts.$x.$s $ZONE_TTL IN A $NGINX_ADDR"
        done
        # SMTP TLS reporting (RFC 8460, tests/integration/test_tlsrpt.py)
        echo "_smtp._tls.wrongname.$s $ZONE_TTL IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@enforce.sts.test\""
        echo "_smtp._tls.enforce.$s $ZONE_TTL IN TXT \"v=TLSRPTv1; rua=https://tlsrpt.sts.test/v1/report\""
        echo "_smtp._tls.expired.$s $ZONE_TTL IN TXT \"v=TLSRPTv1; rua=mailto:a@enforce.sts.test\""
        echo "_smtp._tls.expired.$s $ZONE_TTL IN TXT \"v=TLSRPTv1; rua=mailto:b@enforce.sts.test\""
        echo "tlsrpt.$s $ZONE_TTL IN A $TLSRPT_HTTPS_ADDR"
        # HTTPS report endpoints that never answer (3 addresses) and that have many addresses (20).
        echo "_smtp._tls.hang.$s $ZONE_TTL IN TXT \"v=TLSRPTv1; rua=https://tlsrpt-hang.sts.test/v1/report\""
        echo "_smtp._tls.many.$s $ZONE_TTL IN TXT \"v=TLSRPTv1; rua=https://tlsrpt-many.sts.test/v1/report\""
        for addr in $TLSRPT_HANG_ADDRS; do echo "tlsrpt-hang.$s $ZONE_TTL IN A $addr"; done
        for addr in $TLSRPT_MANY_ADDRS; do echo "tlsrpt-many.$s $ZONE_TTL IN A $addr"; done
        # Benchmark domains (TB_BULK=N): bN.sts.test, MTA-STS enforce like enforce.sts.test.
        local b
        for ((b = 1; b <= BULK; b++)); do
            echo "b$b.$s $ZONE_TTL IN MX 10 mx.b$b.$s"
            echo "mx.b$b.$s $ZONE_TTL IN A $SMTP_STS_ADDR"
            echo "_mta-sts.b$b.$s $ZONE_TTL IN TXT \"v=STSv1; id=b$b\""
            echo "mta-sts.b$b.$s $ZONE_TTL IN A $NGINX_ADDR"
        done
    } > "$z/sts.test.zone"

    # DNSSEC variants: nsec3.test signed with NSEC3, optout.test with NSEC3 opt-out, each with an
    # unsigned child zone (insecure delegation: NS, no DS); dsbad.test signed, its DS in test. does not match.
    {
        echo "\$ORIGIN nsec3.test."
        soa
        cat <<EOF
@                        IN MX    10 mx
mx                       IN A     $SMTP_DANE_ADDR
_25._tcp.mx              IN TLSA  3 1 1 $EE_SPKI256
wild                     IN MX    10 mx.wild
mx.wild                  IN A     $SMTP_DANE_ADDR
*._tcp.mx.wild           IN TLSA  3 1 1 $EE_SPKI256
cnins                    IN MX    10 alias.cnins
alias.cnins              IN CNAME mx.unsigned.nsec3.test.
b.dname                  IN MX    10 mx.b.dn.dane.test.
mx.b.dname               IN A     $SMTP_DANE_ADDR
_25._tcp.mx.b.dname      IN TLSA  3 1 1 $EE_SPKI256
unsigned                 IN NS    ns.test.
notlsa                   IN MX    10 mx.notlsa
mx.notlsa                IN A     $SMTP_DANE_ADDR
nodata                   IN MX    10 mx.nodata
mx.nodata                IN A     $SMTP_DANE_ADDR
_25._tcp.mx.nodata       IN TXT   "a name with no TLSA"
EOF
    } > "$z/nsec3.test.zone"
    {
        echo "\$ORIGIN unsigned.nsec3.test."
        soa
        echo "@ IN MX 10 mx"
        echo "mx IN A $SMTP_INSECURE_ADDR"
        echo "_25._tcp.mx IN TLSA 3 1 1 $EE_SPKI256"
    } > "$z/unsigned.nsec3.test.zone"
    {
        echo "\$ORIGIN optout.test."
        soa
        echo "@ IN MX 10 mx"
        echo "mx IN A $SMTP_DANE_ADDR"
        echo "_25._tcp.mx IN TLSA 3 1 1 $EE_SPKI256"
        # the delegation to child.optout.test is added after signing (below)
    } > "$z/optout.test.zone"
    {
        echo "\$ORIGIN child.optout.test."
        soa
        echo "@ IN MX 10 mx"
        echo "mx IN A $SMTP_INSECURE_ADDR"
        echo "_25._tcp.mx IN TLSA 3 1 1 $EE_SPKI256"
    } > "$z/child.optout.test.zone"
    {
        echo "\$ORIGIN dsbad.test."
        soa
        echo "@ IN MX 10 mx"
        echo "mx IN A $SMTP_DANE_ADDR"
        echo "_25._tcp.mx IN TLSA 3 1 1 $EE_SPKI256"
    } > "$z/dsbad.test.zone"
    {
        echo "\$ORIGIN rrsigstrip.test."
        soa
        echo "@ IN MX 10 mx"
        echo "mx IN A $SMTP_DANE_ADDR"
        echo "_25._tcp.mx IN TLSA 3 1 1 $EE_SPKI256"
    } > "$z/rrsigstrip.test.zone"

    # keys for the signed zones
    keygen dane.test;  DANE_KSK=$KSK;  DANE_ZSK=$ZSK
    keygen nsec3.test;  NSEC3_KSK=$KSK;  NSEC3_ZSK=$ZSK
    keygen optout.test; OPTOUT_KSK=$KSK; OPTOUT_ZSK=$ZSK
    keygen dsbad.test;  DSBAD_KSK=$KSK;  DSBAD_ZSK=$ZSK
    keygen rrsigstrip.test; STRIPZ_KSK=$KSK; STRIPZ_ZSK=$ZSK
    keygen wrongkey.test; WRONGKEY_KSK=$KSK; WRONGKEY_ZSK=$ZSK
    WRONGKEY_ZSK2=$TB/dns/keys/$(cd "$TB/dns/keys" && ldns-keygen -a ECDSAP256SHA256 wrongkey.test) ||
        die "ldns-keygen failed for wrongkey.test"
    keygen unsupalg.test; UNSUPALG_KSK=$KSK; UNSUPALG_ZSK=$ZSK
    # wrongkey.test: its DNSKEY set (KSK + ZSK) is in the zone file and signed by the KSK, every other RRset
    # only by a second ZSK that is not in the DNSKEY set (signed with -d: keys not added)
    {
        echo "\$ORIGIN wrongkey.test."
        soa
        cat "$WRONGKEY_KSK.key" "$WRONGKEY_ZSK.key"
        echo "@ IN MX 10 mx"
        echo "mx IN A $SMTP_DANE_ADDR"
        echo "_25._tcp.mx IN TLSA 3 1 1 $EE_SPKI256"
    } > "$z/wrongkey.test.zone"
    {
        echo "\$ORIGIN unsupalg.test."
        soa
        echo "@ IN MX 10 mx"
        echo "mx IN A $SMTP_INSECURE_ADDR"
        echo "_25._tcp.mx IN TLSA 3 1 1 $EE_SPKI256"
    } > "$z/unsupalg.test.zone"
    # one zone per signing algorithm, one key (CSK: RSA key generation is slow), MX host with TLSA 3 1 1 mx-ee
    # (the hosts of rsamd5.test and dsa.test are insecure: 127.0.55.2)
    local a
    local -A alg_ksk
    for a in "${ALG_ZONES[@]}"; do
        {
            echo "\$ORIGIN $a.test."
            soa
            echo "@ IN MX 10 mx"
            case $a in
                rsamd5|dsa) echo "mx IN A $SMTP_INSECURE_ADDR" ;;
                *)          echo "mx IN A $SMTP_DANE_ADDR" ;;
            esac
            echo "_25._tcp.mx IN TLSA 3 1 1 $EE_SPKI256"
        } > "$z/$a.test.zone"
        keygen "$a.test" "${ALG_OF[$a]}" csk; alg_ksk[$a]=$KSK
    done
    keygen bogus.test; BOGUS_KSK=$KSK; BOGUS_ZSK=$ZSK
    keygen test;       TEST_KSK=$KSK;  TEST_ZSK=$ZSK
    cp "$TEST_KSK.ds" "$TB/dns/test-anchor.ds"

    # test. (signed): delegations with DS (dane, bogus) and without (insecure, sts)
    {
        echo "\$ORIGIN test."
        soa
        echo "ns        IN A   $NSD_ADDR"
        echo "dane      IN NS  ns.test."
        cat "$DANE_KSK.ds"
        echo "bogus     IN NS  ns.test."
        cat "$BOGUS_KSK.ds"
        echo "insecure  IN NS  ns.test."
        echo "sts       IN NS  ns.test."
        echo "nsec3     IN NS  ns.test."
        cat "$NSEC3_KSK.ds"
        echo "optout    IN NS  ns.test."
        cat "$OPTOUT_KSK.ds"
        # signed, with DS, but delegated to ns-strip.test: the RRSIG-stripping proxy in front of nsd
        echo "rrsigstrip IN NS ns-strip.test."
        cat "$STRIPZ_KSK.ds"
        echo "ns-strip  IN A   $STRIP_ADDR"
        echo "wrongkey  IN NS  ns.test."
        cat "$WRONGKEY_KSK.ds"
        # unsupalg.test is signed (ECDSA), but its only DS names algorithm 253 (PRIVATEDNS), which no validator
        # supports: the delegation is insecure (RFC 4035 §5.2)
        echo "unsupalg  IN NS  ns.test."
        awk '{ $5 = 253; print }' "$UNSUPALG_KSK.ds"
        # the zones signed with one algorithm each, DS as ldns-keygen makes it (SHA-384 for ECDSAP384SHA384,
        # SHA-256 for the others) except rsamd5.test and dsa.test: signed with RSAMD5 and DSA, which RFC 8624
        # says MUST NOT be validated; their DS has a SHA-256 digest, so only the algorithm makes the
        # delegation insecure
        for a in "${ALG_ZONES[@]}"; do
            echo "$a IN NS ns.test."
            case $a in
                rsamd5|dsa) ldns-key2ds -n -2 "${alg_ksk[$a]}.key" || die "ldns-key2ds failed for $a.test" ;;
                *)          cat "${alg_ksk[$a]}.ds" ;;
            esac
        done
        echo "dsbad     IN NS  ns.test."
        # the DS digest with its last hex digit changed: matches no key of dsbad.test
        awk '{ d = $NF; c = substr(d, length(d)); $NF = substr(d, 1, length(d) - 1) (c == "0" ? "1" : "0"); print }' \
            "$DSBAD_KSK.ds"
    } > "$z/test.zone"

    local zone
    for zone in test dane.test bogus.test insecure.test sts.test nsec3.test unsigned.nsec3.test optout.test \
                child.optout.test dsbad.test rrsigstrip.test wrongkey.test unsupalg.test "${ALG_ZONES[@]/%/.test}"; do
        run nsd-checkzone "$zone" "$z/$zone.zone"
    done

    # sign: valid from an hour ago (clock skew) for 30 days; bogus.test expired in 2020
    local inc exp
    inc=$(date -u -d '1 hour ago' +%Y%m%d%H%M%S)
    exp=$(date -u -d '30 days' +%Y%m%d%H%M%S)
    run ldns-signzone -i "$inc" -e "$exp" -f "$z/test.zone.signed" "$z/test.zone" "$TEST_KSK" "$TEST_ZSK"
    run ldns-signzone -i "$inc" -e "$exp" -f "$z/dane.test.zone.signed" "$z/dane.test.zone" "$DANE_KSK" "$DANE_ZSK"
    run ldns-signzone -i 20200101 -e 20200201 -f "$z/bogus.test.zone.signed" "$z/bogus.test.zone" \
        "$BOGUS_KSK" "$BOGUS_ZSK"
    run ldns-signzone -n -t 0 -i "$inc" -e "$exp" -f "$z/nsec3.test.zone.signed" "$z/nsec3.test.zone" \
        "$NSEC3_KSK" "$NSEC3_ZSK"
    run ldns-signzone -n -t 0 -p -i "$inc" -e "$exp" -f "$z/optout.test.zone.signed" "$z/optout.test.zone" \
        "$OPTOUT_KSK" "$OPTOUT_ZSK"
    # A real opt-out span: ldns-signzone -p sets the flag but keeps unsigned delegations in the NSEC3 chain,
    # so the delegation is added only now. It has no NSEC3 of its own; an opt-out NSEC3 covers its hash.
    echo "child.optout.test. $ZONE_TTL IN NS ns.test." >> "$z/optout.test.zone.signed"
    run ldns-signzone -i "$inc" -e "$exp" -f "$z/dsbad.test.zone.signed" "$z/dsbad.test.zone" "$DSBAD_KSK" "$DSBAD_ZSK"
    run ldns-signzone -i "$inc" -e "$exp" -f "$z/rrsigstrip.test.zone.signed" "$z/rrsigstrip.test.zone" \
        "$STRIPZ_KSK" "$STRIPZ_ZSK"
    run ldns-signzone -d -i "$inc" -e "$exp" -f "$z/wrongkey.test.zone.signed" "$z/wrongkey.test.zone" \
        "$WRONGKEY_KSK" "$WRONGKEY_ZSK2"
    run ldns-signzone -i "$inc" -e "$exp" -f "$z/unsupalg.test.zone.signed" "$z/unsupalg.test.zone" \
        "$UNSUPALG_KSK" "$UNSUPALG_ZSK"
    for a in "${ALG_ZONES[@]}"; do
        run ldns-signzone -i "$inc" -e "$exp" -f "$z/$a.test.zone.signed" "$z/$a.test.zone" "${alg_ksk[$a]}"
    done
}

# write_unbound_conf DIR NAME ADDR WHAT SERVER_LINES: DIR/NAME.conf, an unbound on ADDR:$DNS_PORT
# with its pid file, log and control socket DIR/NAME.{pid,log,ctl}, stub zone test. at nsd.
write_unbound_conf() {
    local d=$1 name=$2 addr=$3 what=$4 extra=$5
    local ctl=$d/$name.ctl
    [ ${#ctl} -lt 100 ] || die "DIR path too long for unbound's control socket ($ctl): use a shorter DIR"
    cat > "$d/$name.conf" <<EOF
# unbound ($addr:$DNS_PORT), $what
server:
    verbosity: 1
    interface: $addr
    port: $DNS_PORT
    so-reuseport: no
    do-ip6: no
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    username: ""
    chroot: ""
    directory: "$d"
    pidfile: "$d/$name.pid"
    logfile: "$d/$name.log"
    use-syslog: no
    log-time-ascii: yes
    do-not-query-localhost: no
    local-zone: "test." nodefault
    cache-max-ttl: 5
    cache-max-negative-ttl: 5
$extra
remote-control:
    control-enable: yes
    control-interface: "$ctl"
    control-use-cert: no
stub-zone:
    name: "test."
    stub-addr: $NSD_ADDR@$DNS_PORT
EOF
}

write_dns_configs() {
    local d=$TB/dns
    cat > "$d/nsd.conf" <<EOF
# nsd, authoritative for the test bed zones ($NSD_ADDR:$DNS_PORT)
server:
    ip-address: $NSD_ADDR
    port: $DNS_PORT
    do-ip6: no
    reuseport: no
    server-count: 1
    verbosity: 1
    # Response rate limiting would drop the benchmark's bursts from unbound
    # (all from one address) and turn them into SERVFAILs.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    username: ""
    chroot: ""
    zonesdir: "$d/zones"
    database: ""
    zonelistfile: "$d/nsd-zone.list"
    xfrdfile: "$d/nsd-xfrd.state"
    xfrdir: "$d"
    pidfile: "$d/nsd.pid"
    logfile: "$d/nsd.log"
remote-control:
    control-enable: no
zone:
    name: "test."
    zonefile: "test.zone.signed"
zone:
    name: "dane.test."
    zonefile: "dane.test.zone.signed"
zone:
    name: "bogus.test."
    zonefile: "bogus.test.zone.signed"
zone:
    name: "insecure.test."
    zonefile: "insecure.test.zone"
zone:
    name: "sts.test."
    zonefile: "sts.test.zone"
zone:
    name: "nsec3.test."
    zonefile: "nsec3.test.zone.signed"
zone:
    name: "unsigned.nsec3.test."
    zonefile: "unsigned.nsec3.test.zone"
zone:
    name: "optout.test."
    zonefile: "optout.test.zone.signed"
zone:
    name: "child.optout.test."
    zonefile: "child.optout.test.zone"
zone:
    name: "dsbad.test."
    zonefile: "dsbad.test.zone.signed"
zone:
    name: "wrongkey.test."
    zonefile: "wrongkey.test.zone.signed"
zone:
    name: "unsupalg.test."
    zonefile: "unsupalg.test.zone.signed"
EOF
    local a
    for a in "${ALG_ZONES[@]}"; do
        printf 'zone:\n    name: "%s.test."\n    zonefile: "%s.test.zone.signed"\n' "$a" "$a"
    done >> "$d/nsd.conf"
    cat > "$d/nsd-refused.conf" <<EOF
# nsd without zones: answers REFUSED to every query ($REFUSED_ADDR:$DNS_PORT)
server:
    ip-address: $REFUSED_ADDR
    port: $DNS_PORT
    do-ip6: no
    reuseport: no
    server-count: 1
    verbosity: 1
    username: ""
    chroot: ""
    zonesdir: "$d"
    database: ""
    zonelistfile: "$d/nsd-refused-zone.list"
    xfrdfile: "$d/nsd-refused-xfrd.state"
    xfrdir: "$d"
    pidfile: "$d/nsd-refused.pid"
    logfile: "$d/nsd-refused.log"
remote-control:
    control-enable: no
# the one zone it serves, reached only through the RRSIG-stripping proxy ($STRIP_ADDR); everything else: REFUSED
zone:
    name: "rrsigstrip.test."
    zonefile: "$d/zones/rrsigstrip.test.zone.signed"
EOF
    # The validating resolver (mxsec's) and one that does not validate: same stub zone.
    write_unbound_conf "$d" unbound "$UNBOUND_ADDR" \
        "validating resolver of the test bed, trust anchor: DS of test." \
        "    val-log-level: 2
    trust-anchor-file: \"$d/test-anchor.ds\"
    ede: yes"
    write_unbound_conf "$d" unbound-noval "$NOVAL_ADDR" \
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

write_www() {
    local x s=sts.test
    for x in "${STS_DOMAINS[@]}"; do mkdir -p "$TB/www/$x.$s/.well-known"; done
    policy_file enforce.$s  "version: STSv1\r\nmode: enforce\r\nmx: mx1.enforce.$s\r\nmx: *.enforce.$s\r\nmax_age: 86400\r\n"
    policy_file testing.$s  "version: STSv1\r\nmode: testing\r\nmx: mx.testing.$s\r\nmax_age: 86400\r\n"
    policy_file none.$s     "version: STSv1\nmode: none\nmax_age: 86400\n"
    policy_file wildcard.$s "version: STSv1\nmode: enforce\nmx: *.wildcard.$s\nmax_age: 86400\n"
    for x in ctype cached idchange badtxt notxt strip wrongname expired; do
        policy_file $x.$s "version: STSv1\nmode: enforce\nmx: mx.$x.$s\nmax_age: 86400\n"
    done
    policy_file tstrip.$s   "version: STSv1\nmode: testing\nmx: mx.tstrip.$s\nmax_age: 86400\n"
    policy_file syntax.$s   "version: STSv1\nmode: enforced\nmx: mx.syntax.$s\nmax_age: 86400\nmax_age: 3600\n"
    policy_file hugeage.$s  "version: STSv1\nmode: enforce\nmx: mx.hugeage.$s\nmax_age: 99999999999\n"
    big_policy big.$s 70000
    big_policy chunked.$s 70000
    policy_file both.dane.test "version: STSv1\nmode: enforce\nmx: mx.ee.dane.test\nmax_age: 86400\n"
    # redirect and notfound: dedicated nginx blocks, no file
    local b
    for ((b = 1; b <= BULK; b++)); do
        mkdir -p "$TB/www/b$b.$s/.well-known"
        policy_file "b$b.$s" "version: STSv1\nmode: enforce\nmx: mx.b$b.$s\nmax_age: 86400\n"
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
    local n=$TB/nginx l="$NGINX_ADDR:$HTTPS_PORT ssl" user=
    mkdir -p "$n"/{body,proxy,fastcgi,uwsgi,scgi}
    # workers run as root when started by root, so that a DIR with mode 0700 (mktemp -d) stays readable
    [ "$(id -u)" = 0 ] && user="user root root;"
    cat > "$n/nginx.conf" <<EOF
# nginx of the test bed: MTA-STS policies on $NGINX_ADDR:$HTTPS_PORT
$user
worker_processes 1;
pid $n/nginx.pid;
error_log $n/error.log notice;
events { worker_connections 64; }
http {
    access_log $n/access.log;
    client_body_temp_path $n/body;
    proxy_temp_path $n/proxy;
    fastcgi_temp_path $n/fastcgi;
    uwsgi_temp_path $n/uwsgi;
    scgi_temp_path $n/scgi;
    server_tokens off;
$(web_cert_conf)
    ssl_protocols TLSv1.2 TLSv1.3;
    types { }
    default_type text/plain;

    # generic: https://mta-sts.<domain>/... served from $TB/www/<domain>/
    server {
        listen $l default_server;
        server_name ~^mta-sts\\.(?<d>.+)\$;
        root $TB/www/\$d;
        location / { types { } default_type text/plain; }
    }
    server {
        listen $l;
        server_name mta-sts.redirect.sts.test;
        location / { return 301 https://mta-sts.enforce.sts.test/.well-known/mta-sts.txt; }
    }
    server {
        listen $l;
        server_name mta-sts.ctype.sts.test;
        root $TB/www/ctype.sts.test;
        location / { types { } default_type text/html; }
    }
    server {
        listen $l;
        server_name mta-sts.notfound.sts.test;
        location / { return 404; }
    }
    # the ssi filter drops Content-Length: the body goes out chunked
    server {
        listen $l;
        server_name mta-sts.chunked.sts.test;
        root $TB/www/chunked.sts.test;
        location / { types { } default_type text/plain; ssi on; ssi_types text/plain; }
    }
}
EOF
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
    cat > "$B/etc/main.cf" <<EOF
# Postfix of the mxsec test bed: receives mail for ANY domain on $SMTP_DANE_ADDR, $SMTP_INSECURE_ADDR and
# $SMTP_STS_ADDR port $SMTP_PORT (master.cf services) into the catch-all Maildir $B/mail/catchall/
compatibility_level = 3.6
queue_directory = $B/spool
data_directory = $B/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-testbed
maillog_file = $B/maillog
maillog_file_prefixes = $B
myhostname = postfix.testbed
mydomain = testbed
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
biff = no
append_dot_mydomain = no
readme_directory = no
alias_maps =
alias_database =
local_recipient_maps =
smtpd_peername_lookup = no
smtpd_banner = \$myhostname ESMTP Postfix (mxsec test bed)
# nothing leaves this instance
default_transport = error:5.3.0 the test bed Postfix does not relay
relay_transport = \$default_transport
local_transport = \$default_transport
# every recipient of every domain -> one Maildir
virtual_mailbox_domains = static:all
virtual_mailbox_base = $B/mail
virtual_mailbox_maps = static:catchall/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtputf8_enable = yes
smtpd_tls_security_level = may
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
smtpd_tls_chain_files = $p/mx-ee.key, $p/mx-ee-chain.pem
EOF
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
    cat >> "$B/etc/master.cf" <<EOF
# ---- mxsec test bed: one smtpd per address; myhostname names the listener in the Received: header ----
$SMTP_DANE_ADDR:$SMTP_PORT inet n - n - - smtpd
  -o syslog_name=postfix-testbed/dane
  -o myhostname=$PF_NAME_DANE
  -o smtpd_tls_chain_files=$p/mx-ee.key,$p/mx-ee-chain.pem
$SMTP_INSECURE_ADDR:$SMTP_PORT inet n - n - - smtpd
  -o syslog_name=postfix-testbed/insecure
  -o myhostname=$PF_NAME_INSECURE
  -o smtpd_tls_chain_files=$p/mx-insecure.key,$p/mx-insecure-chain.pem
$SMTP_STS_ADDR:$SMTP_PORT inet n - n - - smtpd
  -o syslog_name=postfix-testbed/sts
  -o myhostname=$PF_NAME_STS
  -o smtpd_tls_chain_files=$p/mx-sts.key,$p/mx-sts-chain.pem
  -o tls_server_sni_maps=texthash:$B/etc/sts-sni
EOF
    run postfix -c "$B/etc" check
}

write_client_files() {
    mkdir -p "$TB/state" "$TB/queue"
    cat > "$TB/mxsec.conf" <<EOF
dns_resolver = $UNBOUND_ADDR
dnssec_validation = resolver
dnssec_probe = probe.bogus.test
dnssec_probe_secure = test
ca_file = $TB/pki/ca.pem
state_dir = $TB/state
queue_dir = $TB/queue
helo_name = client.test
EOF
    {
        echo "# mxsec test bed $TB (source this file)"
        printf 'TB_DIR=%q\n' "$TB"
        echo "TB_NSD=$NSD_ADDR"
        echo "TB_UNBOUND=$UNBOUND_ADDR"
        echo "TB_REFUSED=$REFUSED_ADDR"
        echo "TB_UNBOUND_NOVAL=$NOVAL_ADDR"
        echo "TB_NGINX=$NGINX_ADDR"
        printf 'TB_CA=%q\n' "$TB/pki/ca.pem"
        printf 'TB_CONF=%q\n' "$TB/mxsec.conf"
        echo "TB_SMTP_DANE=$SMTP_DANE_ADDR"
        echo "TB_SMTP_INSECURE=$SMTP_INSECURE_ADDR"
        echo "TB_SMTP_STS=$SMTP_STS_ADDR"
        printf 'TB_MAILDIR=%q\n' "$TB/postfix/mail/catchall"
        printf 'TB_MAILLOG=%q\n' "$TB/postfix/maillog"
        printf 'TB_POSTFIX_ETC=%q\n' "$TB/postfix/etc"
        printf 'TB_SCRIPTED=%q\n' "$TB/smtp"
        local m vars=
        for m in "${SCRIPTED_MODES[@]}"; do
            echo "TB_SCRIPTED_${m^^}=${SCRIPTED[$m]}"
            vars+=" TB_SCRIPTED_${m^^}"
        done
        echo "export TB_DIR TB_NSD TB_UNBOUND TB_UNBOUND_NOVAL TB_REFUSED TB_NGINX TB_CA TB_CONF TB_SMTP_DANE TB_SMTP_INSECURE TB_SMTP_STS"
        echo "export TB_MAILDIR TB_MAILLOG TB_POSTFIX_ETC TB_SCRIPTED$vars"
    } > "$TB/env.sh"
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

cmd_start() {
    local t0=$SECONDS
    BULK=${TB_BULK:-0}   # benchmark domains bN.dane.test and bN.sts.test, N = 1..TB_BULK
    [[ $BULK =~ ^[0-9]+$ ]] || die "TB_BULK must be a number"

    TB=$(resolve_dir "${1:-}")
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

    check_free "$NSD_ADDR" "$DNS_PORT" u nsd;              check_free "$NSD_ADDR" "$DNS_PORT" t nsd
    check_free "$REFUSED_ADDR" "$DNS_PORT" u nsd-refused;  check_free "$REFUSED_ADDR" "$DNS_PORT" t nsd-refused
    check_free "$UNBOUND_ADDR" "$DNS_PORT" u unbound;      check_free "$UNBOUND_ADDR" "$DNS_PORT" t unbound
    check_free "$NOVAL_ADDR" "$DNS_PORT" u unbound-noval;  check_free "$NOVAL_ADDR" "$DNS_PORT" t unbound-noval
    check_free "$STRIP_ADDR" "$DNS_PORT" u dnsstrip
    check_free "$NGINX_ADDR" "$HTTPS_PORT" t nginx
    check_free "$SMTP_DANE_ADDR" "$SMTP_PORT" t postfix
    check_free "$SMTP_INSECURE_ADDR" "$SMTP_PORT" t postfix
    check_free "$SMTP_STS_ADDR" "$SMTP_PORT" t postfix
    local m
    for m in "${SCRIPTED_MODES[@]}"; do check_free "${SCRIPTED[$m]}" "$SMTP_PORT" t "smtp_server.py $m"; done

    SERIAL=$(date +%s)
    make_pki
    write_zones
    write_dns_configs
    write_www
    write_nginx_conf
    write_postfix_conf
    write_client_files

    start_daemon nsd probe_nsd nsd -c "$TB/dns/nsd.conf"
    start_daemon nsd-refused probe_refused nsd -c "$TB/dns/nsd-refused.conf"
    start_daemon dnsstrip probe_dnsstrip /usr/bin/python3 "$HERE/dns_strip_proxy.py" --listen "$STRIP_ADDR:$DNS_PORT" \
        --upstream "$REFUSED_ADDR:$DNS_PORT" --pidfile "$TB/dns/strip.pid" --log "$TB/dns/strip.log"
    start_daemon unbound probe_unbound unbound -c "$TB/dns/unbound.conf"
    start_daemon unbound-noval probe_unbound_noval unbound -c "$TB/dns/unbound-noval.conf"
    start_daemon nginx probe_nginx nginx -p "$TB/nginx/" -e "$TB/nginx/error.log" -c "$TB/nginx/nginx.conf"
    start_daemon postfix probe_postfix postfix -c "$TB/postfix/etc" start
    local listen=()
    for m in "${SCRIPTED_MODES[@]}"; do listen+=(--listen "$m=${SCRIPTED[$m]}:$SMTP_PORT"); done
    start_daemon smtp probe_smtp /usr/bin/python3 "$HERE/smtp_server.py" --dir "$TB" \
        --pidfile "$TB/smtp/server.pid" "${listen[@]}"

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
