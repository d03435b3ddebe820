#!/usr/bin/env bash
# Every profile produces the extensions documented for it, read back by OpenSSL (never by
# us): the five built-in ones exactly as django-ca ships them (keyUsage critical,
# extendedKeyUsage not), SAN, SKI/AKI, the CA's CRL/OCSP/issuer URLs (templates filled
# in) where the profile adds them, OCSPNoCheck on ocsp; a profile from the configuration
# file and a disabled one; a CA's own default profile; per-request overrides.
set -euo pipefail
cd "$(dirname "$0")/../../.."
. tests/softhsm/appliance/lib.sh
trap '[ -n "${APP_PID:-}" ] && kill -KILL -- "-$APP_PID" 2>/dev/null || true' EXIT

appliance_setup
conf_set "profile custom" description "A configured profile of test_profiles.sh"
conf_set "profile custom" key_usage "digitalSignature, keyAgreement"
conf_set "profile custom" key_usage_critical false
conf_set "profile custom" extended_key_usage "codeSigning, 1.2.3.4.5"
conf_set "profile custom" extended_key_usage_critical true
conf_set "profile custom" expires_days 30
conf_set "profile custom" subject "O=Custom Org,C=AT"
conf_set "profile custom" cn_in_san false
conf_set "profile custom" add_crl_url false
conf_set "profile custom" add_issuer_url false
conf_set "profile custom" policy "1.3.6.1.4.1.99999.7;cps=https://cps.example.test/custom"
conf_set "profile custom" tls_feature_status_request true
conf_set "profile retired" key_usage digitalSignature
conf_set "profile retired" enabled false
appliance_start

step "a CA with URLs for what it issues (templates {ca_name}, {ca_serial})"
p11ca ca init prof-ca "CN=Profile Test CA,O=p11ca tests" --key-type p256 \
	--crl-url 'http://crl.example.test/{ca_name}.crl' --ocsp-url http://ocsp.example.test/ \
	--issuer-url 'http://ca.example.test/{ca_serial}.der' >/dev/null
p11ca ca export prof-ca --out "$APP/prof-ca.pem"
ca_serial=$(cert_serial "$APP/prof-ca.pem" | sed 's/^0*//')
ca_ski=$(ext "$APP/prof-ca.pem" subjectKeyIdentifier)
[ -n "$ca_ski" ] || fail "the CA certificate has no subjectKeyIdentifier"
crl_url=http://crl.example.test/prof-ca.crl
ocsp_url=http://ocsp.example.test/
p11ca --json profile list >"$APP/profiles.json"

# profile_flag NAME FIELD: a field of `profile list --json` for one profile.
profile_flag() {
	"$PY" - "$APP/profiles.json" "$1" "$2" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
profiles = doc["profiles"] if isinstance(doc, dict) else doc
p = next(p for p in profiles if p["name"] == sys.argv[2])
print(str(p.get(sys.argv[3], False)).lower())
PY
}

# The issuer URL as the certificate has it: {ca_serial} is the CA's serial in uppercase
# hex; leading zeros are not part of the contract, so compare without them.
issuer_url_of() {
	ext "$1" authorityInfoAccess | tr ';' '\n' | sed -n 's/.*CA Issuers - URI://p' |
		sed 's#^\(http://ca.example.test/\)0*#\1#'
}

# common_checks CERT PROFILE: SAN, SKI/AKI, basicConstraints and the CA's URLs as the
# profile says (profile list), and the chain verifies.
common_checks() {
	local c=$1 p=$2 aki aia want_aia
	openssl verify -CAfile "$APP/prof-ca.pem" "$c" >/dev/null || fail "$p: does not verify"
	expect_ext "$c" subjectAltName noncritical \
		"DNS:$p.example.test, DNS:alt.example.test, IP Address:192.0.2.7"
	[ -n "$(ext "$c" subjectKeyIdentifier)" ] || fail "$p: no subjectKeyIdentifier"
	case $(ext "$c" subjectKeyIdentifier) in critical*) fail "$p: SKI is critical" ;; esac
	aki=$(ext "$c" authorityKeyIdentifier | sed 's/keyid://')
	[ "$aki" = "$ca_ski" ] || fail "$p: AKI '$aki' is not the CA's SKI '$ca_ski'"
	ext "$c" basicConstraints | grep -q 'CA:FALSE' || fail "$p: basicConstraints is not CA:FALSE"
	if [ "$(profile_flag "$p" add_crl_url)" = true ]; then
		expect_ext "$c" crlDistributionPoints noncritical "Full Name:, URI:$crl_url"
	else
		expect_no_ext "$c" crlDistributionPoints
	fi
	want_aia=
	[ "$(profile_flag "$p" add_ocsp_url)" = true ] && want_aia="OCSP - URI:$ocsp_url"
	aia=$(ext "$c" authorityInfoAccess)
	if [ "$(profile_flag "$p" add_issuer_url)" = true ]; then
		[ "$(issuer_url_of "$c")" = "http://ca.example.test/$ca_serial.der" ] ||
			fail "$p: caIssuers URL is not the CA's with its serial: $aia"
	else
		case $aia in *"CA Issuers"*) fail "$p: caIssuers URL although the profile adds none" ;; esac
	fi
	if [ -n "$want_aia" ]; then
		case $aia in *"$want_aia"*) ;; *) fail "$p: no OCSP URL in AIA: '$aia'" ;; esac
	else
		case $aia in *OCSP*) fail "$p: an OCSP URL although the profile adds none: $aia" ;; esac
	fi
	case $(ext "$c" authorityInfoAccess) in critical*) fail "$p: AIA is critical" ;; esac
}

# sign_profile PROFILE [OPTIONS...]: issue for PROFILE.example.test into $APP/PROFILE.pem.
sign_profile() {
	local p=$1
	shift
	make_csr "$p" "$p.example.test"
	p11ca cert sign --ca prof-ca --csr "$APP/$p.csr" --profile "$p" \
		--subject "CN=$p.example.test" --san DNS:alt.example.test --san IP:192.0.2.7 \
		--out "$APP/$p.pem" "$@" >/dev/null || fail "cert sign --profile $p"
}

step "the built-in profiles, as django-ca documents them"
KU_SERVER="Digital Signature, Key Encipherment, Key Agreement"
declare -A want_ku=(
	[client]="Digital Signature"
	[server]=$KU_SERVER
	[webserver]=$KU_SERVER
	[enduser]="Digital Signature, Key Encipherment, Data Encipherment"
	[ocsp]="Digital Signature, Non Repudiation, Key Encipherment"
)
declare -A want_eku=(
	[client]="TLS Web Client Authentication"
	[server]="TLS Web Client Authentication, TLS Web Server Authentication"
	[webserver]="TLS Web Server Authentication"
	[enduser]="TLS Web Client Authentication, Code Signing, E-mail Protection"
	[ocsp]="OCSP Signing"
)
for p in client server webserver enduser ocsp; do
	sign_profile "$p"
	expect_ext "$APP/$p.pem" keyUsage critical "${want_ku[$p]}"
	expect_ext "$APP/$p.pem" extendedKeyUsage noncritical "${want_eku[$p]}"
	common_checks "$APP/$p.pem" "$p"
	if [ "$p" = ocsp ]; then
		[ -n "$(ext "$APP/$p.pem" noCheck)" ] || fail "ocsp: no OCSPNoCheck extension"
		case $(ext "$APP/$p.pem" noCheck) in critical*) fail "ocsp: OCSPNoCheck critical" ;; esac
	else
		expect_no_ext "$APP/$p.pem" noCheck
	fi
	expect_no_ext "$APP/$p.pem" tlsfeature
	expect_no_ext "$APP/$p.pem" certificatePolicies
done
# What the profiles are for, in OpenSSL's own terms.
openssl verify -purpose sslserver -CAfile "$APP/prof-ca.pem" "$APP/webserver.pem" >/dev/null ||
	fail "a webserver certificate is not good for a TLS server"
if openssl verify -purpose sslclient -CAfile "$APP/prof-ca.pem" "$APP/webserver.pem" \
	>/dev/null 2>&1; then
	fail "a webserver certificate passes as a TLS client"
fi
openssl verify -purpose sslclient -CAfile "$APP/prof-ca.pem" "$APP/client.pem" >/dev/null ||
	fail "a client certificate is not good for a TLS client"

step "without --profile: the server's default (webserver)"
make_csr dflt dflt.example.test
p11ca cert sign --ca prof-ca --csr "$APP/dflt.csr" --out "$APP/dflt.pem" >/dev/null
expect_ext "$APP/dflt.pem" extendedKeyUsage noncritical "TLS Web Server Authentication"
expect_ext "$APP/dflt.pem" subjectAltName noncritical "DNS:dflt.example.test"

step "a profile from the configuration file"
make_csr custom custom.example.test
p11ca cert sign --ca prof-ca --csr "$APP/custom.csr" --profile custom \
	--subject CN=custom.example.test --out "$APP/custom.pem" >/dev/null
c=$APP/custom.pem
openssl verify -CAfile "$APP/prof-ca.pem" "$c" >/dev/null || fail "custom: does not verify"
expect_ext "$c" keyUsage noncritical "Digital Signature, Key Agreement"
expect_ext "$c" extendedKeyUsage critical "Code Signing, 1.2.3.4.5"
subject=$(openssl x509 -in "$c" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
echo "  subject: $subject"
[ "$subject" = "CN=custom.example.test,O=Custom Org,C=AT" ] ||
	fail "custom: the profile's default subject was not merged in canonical order: $subject"
expect_no_ext "$c" subjectAltName # cn_in_san = false and no --san
expect_no_ext "$c" crlDistributionPoints
expect_ext "$c" authorityInfoAccess noncritical "OCSP - URI:$ocsp_url"
expect_ext "$c" certificatePolicies noncritical \
	"Policy: 1.3.6.1.4.1.99999.7; CPS: https://cps.example.test/custom"
expect_ext "$c" tlsfeature noncritical "status_request"
end=$(date -d "$(openssl x509 -in "$c" -noout -enddate | sed 's/notAfter=//')" +%s)
days=$(((end - $(date +%s) + 43200) / 86400))
[ "$days" = 30 ] || fail "custom: valid for $days days, the profile says 30"

step "a disabled profile is refused, before anything is signed"
make_csr retired retired.example.test
expect_fail "retired.*(disabled|enabled|profile list)|profile.*retired" \
	p11ca cert sign --ca prof-ca --csr "$APP/retired.csr" --profile retired
expect_fail "profile" p11ca cert sign --ca prof-ca --csr "$APP/retired.csr" --profile no-such
expect_fail "retired|profile" p11ca ca edit prof-ca --default-profile retired

step "a per-CA default profile (ca edit), and back to the server's"
p11ca ca edit prof-ca --default-profile client >/dev/null
p11ca --json cert sign --ca prof-ca --csr "$APP/dflt.csr" --out "$APP/cadflt.pem" >"$APP/cadflt.json"
expect_ext "$APP/cadflt.pem" extendedKeyUsage noncritical "TLS Web Client Authentication"
expect_ext "$APP/cadflt.pem" keyUsage critical "Digital Signature"
[ "$(json cert.profile <"$APP/cadflt.json")" = client ] || fail "the certificate is not recorded as client"
p11ca ca edit prof-ca --no-default-profile >/dev/null
p11ca cert sign --ca prof-ca --csr "$APP/dflt.csr" --out "$APP/dflt2.pem" >/dev/null
expect_ext "$APP/dflt2.pem" extendedKeyUsage noncritical "TLS Web Server Authentication"

step "request overrides: OCSP URL, policy with CPS and notice, must-staple, no CRL URL"
make_csr over over.example.test
p11ca cert sign --ca prof-ca --csr "$APP/over.csr" --ocsp-url http://override.example.test/ocsp \
	--policy '1.3.6.1.4.1.99999.1;cps=https://cps.example.test/cps;notice=Issued for testing only' \
	--must-staple --no-crl-url --out "$APP/over.pem" >/dev/null
c=$APP/over.pem
openssl x509 -in "$c" -noout -text >"$APP/over.txt"
aia=$(ext "$c" authorityInfoAccess)
case $aia in *"OCSP - URI:http://override.example.test/ocsp"*) ;; *) fail "no override OCSP URL: $aia" ;; esac
case $aia in *"$ocsp_url;"* | *"$ocsp_url") fail "the CA's OCSP URL survived the override: $aia" ;; esac
[ "$(issuer_url_of "$c")" = "http://ca.example.test/$ca_serial.der" ] ||
	fail "the CA's caIssuers URL was lost by an OCSP override: $aia"
expect_no_ext "$c" crlDistributionPoints
grep -A6 'Certificate Policies' "$APP/over.txt"
grep -q 'Policy: 1.3.6.1.4.1.99999.1' "$APP/over.txt" || fail "policy OID missing"
grep -q 'CPS: https://cps.example.test/cps' "$APP/over.txt" || fail "CPS URI missing"
grep -q 'Explicit Text: Issued for testing only' "$APP/over.txt" || fail "user notice missing"
grep -A1 'TLS Feature' "$APP/over.txt" | grep -q status_request || fail "must-staple missing"
expect_fail "url|ftp" p11ca cert sign --ca prof-ca --csr "$APP/over.csr" --ocsp-url ftp://x.test/
expect_fail "\{|template|brace" p11ca cert sign --ca prof-ca --csr "$APP/over.csr" \
	--crl-url 'http://crl.example.test/{nope}.crl'

appliance_stop
APP_PID=
echo "PASS"
