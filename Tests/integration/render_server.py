"""A tiny vLLM-compatible render endpoint for the precise-prefix tests (kv-index.md §6).

Tokenizer: whitespace-separated words; a decimal word below 2**32 is that token id, any other word gets
1000 + fnv32(word) % 100000. Chat: per message a role token (system 1, user 2, assistant 3, other 4) then its
content words; add_generation_prompt (default true) appends 9.

  POST /v1/completions/render       {"model", "prompt"}   -> [{"token_ids": [...]}]
  POST /v1/chat/completions/render  {"model", "messages"} -> {"token_ids": [...]}
  GET  /stats                        -> {"calls": n}
With --stall every POST is accepted and never answered (a hung tokenizer)."""
import argparse
import http.server
import json
import threading
import time

ROLES = {"system": 1, "user": 2, "assistant": 3}


def word_id(w):
    if w.isdigit() and int(w) < 2 ** 32:
        return int(w)
    h = 0x811C9DC5
    for b in w.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return 1000 + h % 100000


def tokens(text):
    return [word_id(w) for w in text.split()]


def content_text(c):
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
    return ""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stall = False
    calls = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/stats":
            self.reply(200, {"calls": Handler.calls})
        else:
            self.reply(404, {"error": {"message": "not found"}})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        with Handler.lock:
            Handler.calls += 1
        if Handler.stall:
            time.sleep(3600)
            return
        try:
            req = json.loads(raw)
        except ValueError:
            return self.reply(400, {"error": {"message": "bad json"}})
        if self.path == "/v1/completions/render":
            p = req.get("prompt")
            prompts = p if isinstance(p, list) and p and isinstance(p[0], str) else [p]
            out = []
            for one in prompts:
                if isinstance(one, list):
                    out.append({"token_ids": one})
                else:
                    out.append({"token_ids": tokens(one or "")})
            return self.reply(200, out)
        if self.path == "/v1/chat/completions/render":
            ids = []
            for m in req.get("messages", []):
                ids.append(ROLES.get(m.get("role"), 4))
                ids += tokens(content_text(m.get("content")))
            if req.get("add_generation_prompt", True):
                ids.append(9)
            return self.reply(200, {"token_ids": ids})
        self.reply(404, {"error": {"message": "not found"}})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--stall", action="store_true")
    a = ap.parse_args()
    Handler.stall = a.stall
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
