#!/usr/bin/python3
"""A minimal p11ca RPC client in Python: stock `protoc --python_out` and Python's `ssl`.

It proves the contract works from another language against a live p11cad, and is a starting
point for automation. Generate the bindings, then run it:

    protoc --python_out=DIR -I rpc rpc/p11ca.proto
    PYTHONPATH=DIR:rpc/clients/python /usr/bin/python3 rpc/clients/python/p11ca_client.py \
        --server 127.0.0.1:7443 --cert admin.crt --key admin.key --cacert ca.crt ca-list
    ... sign --ca NAME --csr req.pem [--profile webserver] [--out cert.pem]

Every operation of the contract is a method (ca_init, ca_import, ca_edit, ca_revoke,
cert_resign, cert_import, cert_watchers, list_certs, profile_list, notify_expiring, or
Client.op(name, **fields) for any); the command line above offers only a few.

Transport as docs/rpc.md says: TLS 1.3 only, a client certificate, ALPN "p11ca/1", the
server's certificate checked against --cacert and the host name; each Request in one frame
(4-byte big-endian length + message), one Response frame back with the same request_id.
Exit status: 0 OK, 1 the server answered with a non-OK status, 2 usage, 3 transport error.
"""
import argparse
import os
import socket
import ssl
import sys

from roundtrip import FrameError, read_frame, write_frame

import p11ca_pb2 as pb

API_VERSION = 1
ALPN = "p11ca/1"


class Client:
    """One mutually-authenticated connection; calls are made one at a time."""

    def __init__(self, server, cert, key, cacert, timeout=30.0):
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--server must be HOST:PORT, not {server!r}")
        host = host.strip("[]")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(cafile=cacert)
        ctx.load_cert_chain(certfile=cert, keyfile=key)
        ctx.set_alpn_protocols([ALPN])
        raw = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        if self.sock.selected_alpn_protocol() != ALPN:
            raise ssl.SSLError(f"server did not agree to ALPN {ALPN}")
        self.stream = self.sock.makefile("rwb")
        self.next_id = 1

    def call(self, request):
        request.api_version = API_VERSION
        request.request_id = self.next_id
        self.next_id += 1
        write_frame(self.stream, request)
        self.stream.flush()
        body = read_frame(self.stream)
        if body is None:
            raise FrameError("the server closed the connection without answering")
        response = pb.Response()
        response.ParseFromString(body)
        if response.request_id == 0 and response.status.code != pb.STATUS_CODE_OK:
            # The server could not read the request (so not its id either): it says why,
            # then closes the connection (docs/rpc.md, "Framing").
            raise ServerError(response.status)
        if response.request_id != request.request_id:
            raise FrameError(f"answer to request {response.request_id}, "
                             f"expected {request.request_id}")
        return response

    def close(self):
        try:
            self.stream.close()
            self.sock.close()
        except OSError:
            pass

    def list_cas(self):
        cas, token = [], b""
        while True:
            req = pb.Request()
            req.ca_list.page_token = token
            resp = self._ok(self.call(req))
            cas.extend(resp.ca_list.cas)
            token = resp.ca_list.next_page_token
            if not token:
                return cas

    def sign(self, ca, csr, profile="", **fields):
        """cert_sign; fields as CertSignRequest (sans=[...], watchers=[...],
        extensions=ExtensionSettings or dict, signature_algorithm=..., no_cn_in_san=True)."""
        return self.op("cert_sign", ca=ca, csr=csr, profile=profile, **fields)

    # --- release 0.4: CA and certificate management -----------------------------------

    def op(self, name, **fields):
        """Any operation: `name` is the Request oneof field ("ca_edit"), `fields` those of its
        message. Lists fill repeated fields; dicts or messages fill message fields (an empty
        dict still marks a message as present, which means "none" for a StringList)."""
        req = pb.Request()
        _fill(getattr(req, name), fields)
        if not fields:
            getattr(req, name).SetInParent()
        return getattr(self._ok(self.call(req)), name)

    def ca_init(self, name, subject, **fields):
        return self.op("ca_init", name=name, subject=subject, **fields)

    def ca_view(self, ca):
        return self.op("ca_view", ca=ca)

    def ca_import(self, name, certificate, key_uri, **fields):
        return self.op("ca_import", name=name, certificate=certificate, key_uri=key_uri,
                       **fields)

    def ca_edit(self, ca, **fields):
        return self.op("ca_edit", ca=ca, **fields)

    def ca_revoke(self, ca, reason=0, compromised_at=0):
        return self.op("ca_revoke", ca=ca, reason=reason, compromised_at=compromised_at)

    def cert_revoke(self, serial, reason=0, compromised_at=0):
        return self.op("cert_revoke", serial=serial, reason=reason,
                       compromised_at=compromised_at)

    def cert_resign(self, serial, **fields):
        return self.op("cert_resign", serial=serial, **fields)

    def cert_import(self, certificate, ca="", watchers=()):
        return self.op("cert_import", certificate=certificate, ca=ca, watchers=list(watchers))

    def cert_watchers(self, serial, add=(), remove=()):
        return self.op("cert_watchers", serial=serial, add=list(add), remove=list(remove))

    def list_certs(self, **filters):
        """Every certificate matching CertListRequest filters (ca=, revoked=, expired=,
        expiring_within_days=, profile=, after=), following page tokens; a generator."""
        token = b""
        while True:
            resp = self.op("cert_list", page_token=token, **filters)
            yield from resp.certs
            token = resp.next_page_token
            if not token:
                return
            filters.pop("after", None)  # the token carries the position from here on

    def profile_list(self):
        return list(self.op("profile_list").profiles)

    def notify_expiring(self):
        return self.op("notify_expiring")

    @staticmethod
    def _ok(response):
        if response.status.code != pb.STATUS_CODE_OK:
            raise ServerError(response.status)
        return response


def _fill(msg, fields):
    for key, value in fields.items():
        field = getattr(msg, key)
        if isinstance(value, dict):
            field.SetInParent()
            _fill(field, value)
        elif hasattr(value, "DESCRIPTOR"):
            field.CopyFrom(value)
        elif isinstance(value, (list, tuple)):
            del field[:]
            for v in value:
                if isinstance(v, dict):
                    _fill(field.add(), v)
                else:
                    field.append(v)
        else:
            setattr(msg, key, value)


class ServerError(Exception):
    def __init__(self, status):
        super().__init__(f"{pb.StatusCode.Name(status.code)}: {status.message}")
        self.status = status


def pem(der, label="CERTIFICATE"):
    import base64
    b64 = base64.b64encode(der).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", default=os.environ.get("P11CA_SERVER"))
    ap.add_argument("--cert", default=os.environ.get("P11CA_CERT"))
    ap.add_argument("--key", default=os.environ.get("P11CA_KEY"))
    ap.add_argument("--cacert", default=os.environ.get("P11CA_CACERT"))
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("ca-list", help="list the CAs: name, serial, subject")
    sp = sub.add_parser("sign", help="issue a certificate from a CSR")
    sp.add_argument("--ca", required=True)
    sp.add_argument("--csr", required=True, help="PKCS#10 file, PEM or DER")
    sp.add_argument("--profile", default="")
    sp.add_argument("--out", help="write the certificate (PEM) here instead of stdout")
    args = ap.parse_args(argv)
    for opt in ("server", "cert", "key", "cacert"):
        if not getattr(args, opt):
            ap.error(f"--{opt} (or P11CA_{opt.upper()}) is required")

    try:
        client = Client(args.server, args.cert, args.key, args.cacert)
    except (OSError, ssl.SSLError, ValueError) as e:
        print(f"p11ca_client: cannot connect to {args.server}: {e}", file=sys.stderr)
        return 3
    try:
        if args.command == "ca-list":
            for ca in client.list_cas():
                print(f"{ca.name}\t{ca.serial.hex().upper()}\t{ca.subject}")
        else:
            with open(args.csr, "rb") as f:
                result = client.sign(args.ca, f.read(), args.profile)
            text = pem(result.certificate_der)
            if args.out:
                with open(args.out, "w") as f:
                    f.write(text)
            else:
                sys.stdout.write(text)
            print(f"issued serial {result.cert.serial.hex().upper()}", file=sys.stderr)
    except ServerError as e:
        print(f"p11ca_client: {e}", file=sys.stderr)
        return 1
    except (OSError, ssl.SSLError, FrameError) as e:
        print(f"p11ca_client: connection to {args.server} failed: {e}", file=sys.stderr)
        return 3
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
