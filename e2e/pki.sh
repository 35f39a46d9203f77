#!/usr/bin/env bash
# Generates the control plane's PKI and the admin kubeconfig under $RUN_DIR/pki, once: existing files
# are kept, so a second up.sh talks to the still-running apiserver with the same credentials.
#   ca.{crt,key}          the one CA: signs serving certs, client certs and (in the KCM) CSRs
#   apiserver.{crt,key}   kube-apiserver serving cert (IP SAN 127.0.0.1: rustls checks it for https://127.0.0.1)
#   components.{crt,key}  serving cert for kube-controller-manager and kube-scheduler
#   admin.{crt,key}       client cert in group system:masters
#   sa.{key,pub}          service-account token signing key pair
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "$0")/lib.sh"

PKI=$RUN_DIR/pki
mkdir -p "$PKI"
cd "$PKI"

# sign NAME SUBJECT EXTENSIONS : key + CSR + certificate signed by the CA, valid for ten years.
sign() {
	local name=$1 subj=$2 ext=$3
	[ -f "$name.crt" ] && return 0
	openssl req -new -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
	printf '%s\n' "$ext" >"$name.ext"
	openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
		-extfile "$name.ext" -out "$name.crt" 2>/dev/null
	rm -f "$name.csr" "$name.ext"
}

if [ ! -f ca.crt ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=veer-e2e-ca 2>/dev/null
fi
sign apiserver /CN=kube-apiserver "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1"
sign components /CN=veer-e2e-components "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
sign admin "/O=system:masters/CN=veer-e2e-admin" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
if [ ! -f sa.key ]; then
	openssl genrsa -out sa.key 2048 2>/dev/null
	openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
fi

# The kubeconfig embeds the certificates, so it stays valid when copied elsewhere.
b64() { base64 -w0 <"$1"; }
cat >"$RUN_DIR/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: veer-e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(b64 ca.crt)
users:
- name: veer-e2e-admin
  user:
    client-certificate-data: $(b64 admin.crt)
    client-key-data: $(b64 admin.key)
contexts:
- name: veer-e2e
  context:
    cluster: veer-e2e
    user: veer-e2e-admin
current-context: veer-e2e
EOF
