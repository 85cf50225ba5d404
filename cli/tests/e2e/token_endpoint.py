"""A local stand-in for OpenAI's OAuth token endpoint, for the ChatGPT
login tests: a refresh with the refresh token it expects gets new tokens
(the access token a JWT a day from expiry) and a new refresh token; any
other gets 401 invalid_grant. One JSON line a request on stdout.

usage: token_endpoint.py PORT CERT KEY FIRST_REFRESH_TOKEN
"""

import base64
import json
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, CERT, KEY, FIRST = sys.argv[1:5]
state = {"refresh": FIRST, "issued": 0}


def jwt(claims):
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    return ".".join([b64(b'{"alg":"RS256"}'), b64(json.dumps(claims).encode()), b64(b"signature")])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        ok = (
            self.path == "/oauth/token"
            and body.get("grant_type") == "refresh_token"
            and body.get("client_id") == "app_EMoamEEZ73f0CkXaXp7hrann"
            and body.get("refresh_token") == state["refresh"]
        )
        print(json.dumps({"path": self.path, "ok": ok}), flush=True)
        if ok:
            state["issued"] += 1
            n = state["issued"] + 1
            state["refresh"] = f"rt-real-{n}"
            answer = {
                "access_token": jwt({"exp": int(time.time()) + 86400, "n": n}),
                "refresh_token": state["refresh"],
                "id_token": jwt({"email": "dev@example.com",
                                 "https://api.openai.com/auth": {"chatgpt_plan_type": "pro"}}),
            }
            status = 200
        else:
            answer, status = {"error": "invalid_grant"}, 401
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
