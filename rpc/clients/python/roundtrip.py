#!/usr/bin/python3
"""Answer p11ca Request frames with Response frames, using only stock protoc output.

The Python half of rpc/test_python_interop.sh, and the framing any Python client needs
(read_frame / write_frame work on any binary stream, an ssl.SSLSocket's makefile included):

    protoc --python_out=DIR -I rpc rpc/p11ca.proto
    PYTHONPATH=DIR /usr/bin/python3 rpc/clients/python/roundtrip.py <requests >responses

Each Request read from stdin is decoded, summarised on stderr, and answered on stdout with
a Response built here. With --oversize the status message is one byte over its limit in
rpc/p11ca.options, which a nanopb peer must refuse.

Debian's python3-protobuf lives under /usr/bin/python3, not necessarily the python3 on PATH.
"""
import hashlib
import struct
import sys

from google.protobuf.message import DecodeError

import p11ca_pb2 as pb

# CONFIG_RPC_MAX_FRAME in configs/defconfig: the largest body either side accepts.
MAX_FRAME = 65536
# The status message's max_size in rpc/p11ca.options, NUL included.
STATUS_MESSAGE_MAX = 384
HEADER = struct.Struct(">I")


class FrameError(Exception):
    """The stream broke the framing rules; the connection must be closed."""


def _read_exact(stream, n):
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_frame(stream, max_len=MAX_FRAME):
    """Return the next frame's body, or None when the stream ends cleanly between frames.

    The length is checked before the body is read, as the C reader does.
    """
    head = _read_exact(stream, HEADER.size)
    if not head:
        return None
    if len(head) < HEADER.size:
        raise FrameError("truncated frame header")
    (n,) = HEADER.unpack(head)
    if n == 0:
        raise FrameError("empty frame")
    if n > max_len:
        raise FrameError(f"frame of {n} bytes exceeds the {max_len}-byte limit")
    body = _read_exact(stream, n)
    if len(body) < n:
        raise FrameError(f"truncated frame: {len(body)} of {n} bytes")
    return body


def write_frame(stream, message, max_len=MAX_FRAME):
    body = message.SerializeToString()
    if not body or len(body) > max_len:
        raise FrameError(f"cannot send a {len(body)}-byte message")
    stream.write(HEADER.pack(len(body)) + body)


def describe(req):
    op = req.WhichOneof("op")
    line = f"python: request id={req.request_id} api_version={req.api_version} op={op}"
    if op == "cert_sign":
        s = req.cert_sign
        line += (f" ca={s.ca} profile={s.profile} subject={s.subject!r} sans={list(s.sans)}"
                 f" expires_days={s.expires_days} csr={len(s.csr)} bytes"
                 f" sha256={hashlib.sha256(s.csr).hexdigest()[:16]}")
    elif op == "ca_init":
        c = req.ca_init
        path = f"{c.path_length} (present)" if c.HasField("path_length") else "absent"
        line += (f" name={c.name} parent={c.parent} subject={c.subject!r}"
                 f" key_type={pb.KeyType.Name(c.key_type)}"
                 f" signature_algorithm={pb.SignatureAlgorithm.Name(c.signature_algorithm)}"
                 f" path_length={path} expires_days={c.expires_days}")
    return line


def answer(req, oversize):
    resp = pb.Response(request_id=req.request_id)
    resp.status.code = pb.STATUS_CODE_OK
    resp.status.message = "x" * STATUS_MESSAGE_MAX if oversize else "answered by python"
    op = req.WhichOneof("op")
    if req.api_version != 1:
        resp.status.code = pb.STATUS_CODE_FAILED_PRECONDITION
        resp.status.message = f"api_version {req.api_version} is not served"
    elif op == "cert_sign":
        s = req.cert_sign
        cert = resp.cert_sign.cert
        cert.serial = bytes.fromhex("7F00AB12")
        cert.ca = s.ca
        cert.subject = s.subject
        cert.profile = s.profile
        cert.not_before = 1700000000
        cert.not_after = cert.not_before + s.expires_days * 86400
        cert.status = pb.CERT_STATUS_VALID
        cert.key_type = pb.KEY_TYPE_P256
        resp.cert_sign.certificate_der = bytes(reversed(s.csr))
    elif op == "ca_init":
        c = req.ca_init
        ca = resp.ca_init.ca
        ca.name = c.name
        ca.subject = c.subject
        ca.parent = c.parent
        ca.key_type = c.key_type
        ca.signature_algorithm = c.signature_algorithm
        if c.HasField("path_length"):
            ca.path_length = c.path_length
        ca.status = pb.CA_STATUS_REVOKED
        ca.revocation.revoked_at = -1  # before the epoch: int64 stays signed
        ca.revocation.reason = pb.REVOCATION_REASON_CA_COMPROMISE
    else:
        resp.status.code = pb.STATUS_CODE_UNIMPLEMENTED
        resp.status.message = f"roundtrip.py does not answer {op}"
    return resp


def main(argv):
    oversize = argv[1:] == ["--oversize"]
    if argv[1:] and not oversize:
        print("usage: roundtrip.py [--oversize] <requests >responses", file=sys.stderr)
        return 2
    src, dst = sys.stdin.buffer, sys.stdout.buffer
    try:
        while (body := read_frame(src)) is not None:
            req = pb.Request()
            req.ParseFromString(body)
            print(describe(req), file=sys.stderr)
            write_frame(dst, answer(req, oversize))
    except (FrameError, DecodeError, OSError) as e:
        print(f"roundtrip.py: {e}", file=sys.stderr)
        return 1
    dst.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
