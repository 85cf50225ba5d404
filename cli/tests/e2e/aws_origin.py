"""A local stand-in for AWS (S3 and Bedrock) for the end-to-end tests.

It checks every request's SigV4 signature the way AWS does: botocore's
own signer recomputes it with the real key from what arrived, the clock
must be within 15 minutes, the session token must be the real one, and a
declared payload hash must match the body. Then it answers like S3 (PUT
stores an object, GET returns it) or Bedrock (invoke echoes the prompt).

usage: aws_origin.py PORT CERT KEY ACCESS_KEY_ID SECRET_KEY [SESSION_TOKEN]
Prints "ready" once listening; logs one JSON line per request to stdout.
"""

import base64
import datetime
import hashlib
import json
import re
import ssl
import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

PORT, CERT, KEY, AKID, SECRET = sys.argv[1:6]
TOKEN = sys.argv[6] if len(sys.argv) > 6 else None
OBJECTS = {}
AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$"
)


def decode_aws_chunked(raw):
    """aws-chunked: `hex[;ext]\r\n data \r\n` ... `0\r\n` trailers `\r\n`."""
    out, trailers, i = b"", {}, 0
    while True:
        end = raw.index(b"\r\n", i)
        size = int(raw[i:end].split(b";")[0], 16)
        i = end + 2
        if size == 0:
            break
        out += raw[i : i + size]
        i += size + 2
    for line in raw[i:].split(b"\r\n"):
        if b":" in line:
            name, value = line.split(b":", 1)
            trailers[name.strip().lower().decode()] = value.strip().decode()
    return out, trailers


def check_signature(handler, body):
    """None, or the error AWS would answer."""
    headers = {k.lower(): v for k, v in handler.headers.items()}
    m = AUTH.match(headers.get("authorization", ""))
    if not m:
        return "no SigV4 Authorization header"
    akid, day, region, service, signed, signature = m.groups()
    if akid != AKID:
        return "InvalidAccessKeyId"
    if TOKEN is not None and headers.get("x-amz-security-token") != TOKEN:
        return "InvalidToken"
    if TOKEN is None and "x-amz-security-token" in headers:
        return "InvalidToken"
    amz_date = headers.get("x-amz-date", "")
    when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    if abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) > 900:
        return "RequestTimeTooSkewed"
    if day != amz_date[:8]:
        return "scope date is not the request date"
    names = signed.split(";")
    if "host" not in names or any(n not in headers for n in names):
        return "a signed header is missing"
    request = AWSRequest(method=handler.command, url="https://" + headers["host"] + handler.path, data=body)
    for name in names:
        request.headers[name] = headers[name]
    request.context["timestamp"] = amz_date
    signer = (S3SigV4Auth if service == "s3" else SigV4Auth)(Credentials(AKID, SECRET, TOKEN), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if expected != signature:
        return "SignatureDoesNotMatch"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            raw = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return raw
                raw += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def answer(self, status, body, content_type="application/xml"):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def refuse(self, code):
        # As S3 does, the signature it was given comes back in the error.
        m = AUTH.match(self.headers.get("authorization", ""))
        provided = m.group(6) if m else ""
        self.answer(403, (f"<Error><Code>{code}</Code><Message>{code}</Message>"
                          f"<SignatureProvided>{provided}</SignatureProvided></Error>").encode())

    def handle_any(self):
        raw = self.read_body()
        error = check_signature(self, raw)
        declared = self.headers.get("x-amz-content-sha256")
        body = raw
        if error is None and declared == "STREAMING-UNSIGNED-PAYLOAD-TRAILER":
            body, trailers = decode_aws_chunked(raw)
            if len(body) != int(self.headers.get("x-amz-decoded-content-length", -1)):
                error = "IncompleteBody"
            crc = trailers.get("x-amz-checksum-crc32")
            if crc and base64.b64decode(crc) != zlib.crc32(body).to_bytes(4, "big"):
                error = "BadDigest"
        elif error is None and declared and re.fullmatch("[0-9a-f]{64}", declared):
            if hashlib.sha256(raw).hexdigest() != declared:
                error = "XAmzContentSHA256Mismatch"
        print(json.dumps({"method": self.command, "path": self.path, "payload": declared,
                          "bytes": len(body), "error": error}), flush=True)
        if error:
            return self.refuse(error)
        host = self.headers["host"].split(":")[0]
        if host.startswith("bedrock-runtime."):
            prompt = json.loads(body or b"{}").get("prompt", "")
            return self.answer(200, json.dumps({"completion": "echo: " + prompt}).encode(), "application/json")
        if self.command == "PUT":
            OBJECTS[self.path.split("?")[0]] = body
            self.send_response(200)
            self.send_header("etag", '"%s"' % hashlib.md5(body).hexdigest())
            self.send_header("content-length", "0")
            self.end_headers()
            return
        if self.command in ("GET", "HEAD"):
            obj = OBJECTS.get(self.path.split("?")[0])
            if obj is None:
                return self.answer(404, b"<Error><Code>NoSuchKey</Code></Error>")
            return self.answer(200, obj, "application/octet-stream")
        self.answer(405, b"<Error><Code>MethodNotAllowed</Code></Error>")

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_any


server = ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
