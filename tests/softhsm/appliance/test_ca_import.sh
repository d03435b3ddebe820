#!/usr/bin/env bash
# ca import: a CA whose key was made outside p11ca (pkcs11-tool on the appliance's token)
# and whose certificate was made outside too (libp11's pkcs11 engine) is adopted, issues
# certificates and CRLs that OpenSSL verifies. Refused: a certificate whose public key is
# not the key's, a URI that names two keys, a URI with a PIN, a certificate that is no CA.
set -euo pipefail
cd "$(dirname "$0")/../../.."
. tests/softhsm/appliance/lib.sh
trap '[ -n "${APP_PID:-}" ] && kill -KILL -- "-$APP_PID" 2>/dev/null || true' EXIT

appliance_setup
appliance_start
PIN=$(cat "$APP/hsm/user.pin")

# keygen LABEL ID: an EC P-256 key pair on the appliance's token, made by pkcs11-tool.
keygen() {
	pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --token-label p11ca-test --login \
		--pin "$PIN" --keypairgen --key-type EC:prime256v1 --label "$1" --id "$2" \
		>"$APP/keygen-$1-$2.out" 2>&1 || { cat "$APP/keygen-$1-$2.out"; fail "pkcs11-tool keygen $1"; }
}

# selfsign URI SUBJECT OUT [EXT...]: a self-signed certificate made with the token's key
# through the pkcs11 engine (outside p11ca).
selfsign() {
	local uri=$1 subject=$2 out=$3 args=()
	shift 3
	for e in "$@"; do args+=(-addext "$e"); done
	OPENSSL_CONF=$(engine_conf) openssl req -new -x509 -engine pkcs11 -keyform engine \
		-key "$uri;pin-value=$PIN" -subj "$subject" -days 3650 "${args[@]}" \
		-out "$out" >"$out.log" 2>&1 || { cat "$out.log"; fail "pkcs11 engine: self-signing $out"; }
}
CA_EXT=("basicConstraints=critical,CA:TRUE" "keyUsage=critical,keyCertSign,cRLSign"
	"subjectKeyIdentifier=hash")

step "a key made with pkcs11-tool, a root certificate for it made with the pkcs11 engine"
keygen ext-root 0e01
selfsign "pkcs11:token=p11ca-test;object=ext-root;type=private" "/O=p11ca tests/CN=External Root" \
	"$APP/ext-root.pem" "${CA_EXT[@]}"
openssl verify -CAfile "$APP/ext-root.pem" "$APP/ext-root.pem" >/dev/null ||
	fail "the externally made root does not verify itself"

step "refused: a certificate whose key is not the one the URI names"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$APP/soft.key" \
	-subj "/CN=Software Root" -days 30 -addext basicConstraints=critical,CA:TRUE \
	-addext keyUsage=critical,keyCertSign,cRLSign -out "$APP/soft.pem" 2>/dev/null
expect_fail "not the certificate.s.*public keys differ" \
	p11ca ca import wrong-key "$APP/soft.pem" --key-uri 'pkcs11:object=ext-root'
expect_fail "no private key with label .no-such-key." \
	p11ca ca import no-key "$APP/ext-root.pem" --key-uri 'pkcs11:object=no-such-key'
expect_fail "holds a PIN" \
	p11ca ca import with-pin "$APP/ext-root.pem" --key-uri "pkcs11:object=ext-root;pin-value=1234"
if p11ca ca view wrong-key >/dev/null 2>&1; then fail "a refused import was recorded"; fi

step "import, then issue from it"
p11ca --json ca import ext-root "$APP/ext-root.pem" --key-uri 'pkcs11:object=ext-root' \
	--crl-url 'http://crl.example.test/{ca_name}.crl' >"$APP/import.json"
cat "$APP/import.json"
p11ca ca list | grep -q '^ext-root' || p11ca ca list | grep -q 'ext-root' || fail "ext-root is not listed"
p11ca ca export ext-root --out "$APP/ext-root-export.pem"
cmp <(openssl x509 -in "$APP/ext-root.pem" -outform DER) \
	<(openssl x509 -in "$APP/ext-root-export.pem" -outform DER) ||
	fail "ca export does not give back the imported certificate"
make_csr leaf imported-leaf.example.test
p11ca cert sign --ca ext-root --csr "$APP/leaf.csr" --out "$APP/leaf.pem" >/dev/null
openssl verify -CAfile "$APP/ext-root.pem" "$APP/leaf.pem" ||
	fail "a certificate from the imported CA does not verify"
expect_ext "$APP/leaf.pem" crlDistributionPoints noncritical \
	"Full Name:, URI:http://crl.example.test/ext-root.crl"
[ "$(ext "$APP/leaf.pem" authorityKeyIdentifier | sed 's/keyid://')" = \
	"$(ext "$APP/ext-root.pem" subjectKeyIdentifier)" ] || fail "the leaf's AKI is not the root's SKI"
serial=$(cert_serial "$APP/leaf.pem")
p11ca cert revoke "$serial" --reason superseded >/dev/null
p11ca crl get --ca ext-root --out "$APP/ext-root.crl" >/dev/null
openssl crl -in "$APP/ext-root.crl" -noout -CAfile "$APP/ext-root.pem" 2>&1 | grep -q 'verify OK' ||
	fail "the imported CA's CRL does not verify"
openssl crl -in "$APP/ext-root.crl" -noout -text | grep -q "$serial" || fail "the revocation is not on the CRL"
expect_fail "exists already" \
	p11ca ca import ext-root "$APP/ext-root.pem" --key-uri 'pkcs11:object=ext-root'

step "refused: a URI that names two keys; the same key by label and id is fine"
keygen dup-key 0d01
keygen dup-key 0d02
selfsign "pkcs11:token=p11ca-test;id=%0d%01;type=private" "/CN=Dup Root" "$APP/dup.pem" "${CA_EXT[@]}"
expect_fail "matches more than one private key" \
	p11ca ca import dup "$APP/dup.pem" --key-uri 'pkcs11:object=dup-key'
p11ca ca import dup "$APP/dup.pem" --key-uri 'pkcs11:object=dup-key;id=%0d%01' >/dev/null
p11ca cert sign --ca dup --csr "$APP/leaf.csr" --out "$APP/dup-leaf.pem" >/dev/null
openssl verify -CAfile "$APP/dup.pem" "$APP/dup-leaf.pem" >/dev/null || fail "dup-leaf"

step "refused: a certificate that is no CA"
selfsign "pkcs11:token=p11ca-test;id=%0d%02;type=private" "/CN=Not A CA" "$APP/notca.pem" \
	"basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature"
expect_fail "not a CA certificate" \
	p11ca ca import notca "$APP/notca.pem" --key-uri 'pkcs11:id=%0d%02'

appliance_stop
APP_PID=
echo "PASS"
