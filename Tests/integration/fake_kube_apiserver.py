"""A small fake Kubernetes API server for discovery tests (no kube-apiserver can run on this machine).

It speaks the parts of the real list/watch wire format that `epp` uses:
  GET /api/v1/namespaces/NS/pods and /apis/inference.networking.k8s.io/v1/namespaces/NS/inferencepools
    list:  {"kind": "...List", "metadata": {"resourceVersion": "N", "continue": "..."}, "items": [...]}
           with labelSelector (k=v,...), fieldSelector (metadata.name=X), limit/continue paging
    watch: watch=1&resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=S ⇒ HTTP/1.1 200 with a chunked
           body of newline-delimited {"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": {...}} events;
           objects that start/stop matching a label selector arrive as ADDED/DELETED, as the real server does.
  A resourceVersion older than the compaction point gets an ERROR event with a 410 "Expired" Status (what the
  real server sends on a started watch) or, with expire_with_http_status, an HTTP 410 Status response.
  Paging: `page_size` makes pages smaller than `limit` (allowed: clients must follow `continue`), and
  `expire_continue_tokens` answers continued requests with 410 Expired.
  Bearer-token auth (401 Status otherwise) and HTTPS with a self-signed certificate made by `openssl`.

Tests drive it from Python: add/update/delete pods and pools, compact, expire or close open watches, and read
`requests` (path + query of every request) to check what the client asked for.
"""
import copy
import http.server
import json
import os
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse

POOL_PREFIX = "/apis/inference.networking.k8s.io/v1/namespaces/"
POD_PREFIX = "/api/v1/namespaces/"


def make_self_signed_cert(directory):
    """Writes ca.crt (self-signed, SAN IP:127.0.0.1 + localhost) and its key; returns (cert_path, key_path)."""
    cert, key = os.path.join(directory, "apiserver.crt"), os.path.join(directory, "apiserver.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=fake-kube-apiserver",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def make_client_cert(directory, ca_cert, ca_key, cn="epp"):
    """A client certificate signed by (ca_cert, ca_key); returns (cert_path, key_path)."""
    cert, key, csr = (os.path.join(directory, f"{cn}.{ext}") for ext in ("crt", "key", "csr"))
    subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", key, "-out", csr],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "1", "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def status_object(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def parse_selector(text):
    sel = {}
    for term in filter(None, (text or "").split(",")):
        k, v = term.split("==", 1) if "==" in term else term.split("=", 1)
        sel[k.strip()] = v.strip()
    return sel


class FakeKubeAPIServer:
    def __init__(self, token=None, https=False, cert_dir=None, client_ca=None):
        self.token = token
        self.lock = threading.Condition()
        self.rv = 100
        self.objects = {}          # (resource, namespace, name) -> object
        self.log = []              # (rv, resource, namespace, type, old, new) – the watch history
        self.compacted_rv = 0      # watches from a version below this are expired
        self.expire_with_http_status = False
        self.expire_continue_tokens = 0   # the next N continued list requests get 410 Expired
        self.page_size = 0                # > 0: pages hold at most this many items (the API may return fewer than limit)
        self.watch_generation = 0  # bumped to end open watches (close_watches / expire_watches)
        self.expire_generation = 0
        self.requests = []
        self.open_watches = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                server._handle(self)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.ca_file = None
        if https:
            cert_dir = cert_dir or tempfile.mkdtemp(prefix="fake-kube-")
            cert, key = make_self_signed_cert(cert_dir)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            if client_ca:   # mTLS: the handshake fails without a client certificate issued by client_ca
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(client_ca)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.ca_file, self.ca_key = cert, key
        self.url = f"{'https' if https else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.close_watches()
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- state changes (tests) -------------------------------------------------------------------------------

    def _next_rv(self):
        self.rv += 1
        return str(self.rv)

    def _write(self, resource, ns, name, obj, event_type, record=True):
        with self.lock:
            key = (resource, ns, name)
            old = self.objects.get(key)
            if obj is None:
                self.objects.pop(key, None)
                if old is None:
                    return
                new = copy.deepcopy(old)
                new["metadata"]["resourceVersion"] = self._next_rv()
            else:
                new = copy.deepcopy(obj)
                new["metadata"]["resourceVersion"] = self._next_rv()
                self.objects[key] = new
            if record:
                self.log.append((self.rv, resource, ns, event_type, copy.deepcopy(old), copy.deepcopy(new)))
            self.lock.notify_all()

    def put_pod(self, name, ip="127.0.0.2", ready=True, labels=None, namespace="default", annotations=None,
                deleting=False, record=True):
        """Creates or replaces a pod (ADDED or MODIFIED). record=False changes state without a watch event, as if
        the event was lost to compaction: only a relist sees it."""
        meta = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": dict(labels or {})}
        if annotations:
            meta["annotations"] = dict(annotations)
        if deleting:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        status = {"phase": "Running" if ready else "Pending",
                  "conditions": [{"type": "Ready", "status": "True" if ready else "False"},
                                 {"type": "PodScheduled", "status": "True"}]}
        if ip:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        obj = {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": {"containers": [{"name": "vllm"}]}, "status": status}
        existed = ("pods", namespace, name) in self.objects
        self._write("pods", namespace, name, obj, "MODIFIED" if existed else "ADDED", record)

    def delete_pod(self, name, namespace="default", record=True):
        self._write("pods", namespace, name, None, "DELETED", record)

    def put_pool(self, name, selector, ports, namespace="default", raw_spec=None):
        spec = raw_spec if raw_spec is not None else {
            "selector": {"matchLabels": dict(selector)}, "targetPorts": [{"number": p} for p in ports],
            "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}
        obj = {"kind": "InferencePool", "apiVersion": "inference.networking.k8s.io/v1",
               "metadata": {"name": name, "namespace": namespace}, "spec": spec}
        existed = ("inferencepools", namespace, name) in self.objects
        self._write("inferencepools", namespace, name, obj, "MODIFIED" if existed else "ADDED")

    def delete_pool(self, name, namespace="default"):
        self._write("inferencepools", namespace, name, None, "DELETED")

    def compact(self):
        """Forgets history: a watch resuming from any version seen so far is expired (410)."""
        with self.lock:
            self.compacted_rv = self.rv + 1
            self.log = []
            self.lock.notify_all()

    def expire_watches(self):
        """Compacts and makes every open watch end with an ERROR event carrying a 410 Expired Status."""
        with self.lock:
            self.compact()
            self.expire_generation += 1
            self.lock.notify_all()

    def close_watches(self):
        """Ends every open watch normally (as the server does at timeoutSeconds)."""
        with self.lock:
            self.watch_generation += 1
            self.lock.notify_all()

    def send_bookmark(self):
        with self.lock:
            self.log.append((self.rv, None, None, "BOOKMARK", None, None))
            self.lock.notify_all()

    def count_requests(self, resource, watch):
        with self.lock:
            return sum(1 for (path, q) in self.requests
                       if path.endswith("/" + resource) and (q.get("watch") == "1") == watch)

    # ---- HTTP ----------------------------------------------------------------------------------------------

    def _send_json(self, h, code, obj):
        body = json.dumps(obj).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h):
        url = urllib.parse.urlsplit(h.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        with self.lock:
            self.requests.append((url.path, q))
        if self.token is not None and h.headers.get("Authorization") != f"Bearer {self.token}":
            self._send_json(h, 401, status_object(401, "Unauthorized", "Unauthorized"))
            return
        route = self._route(url.path)
        if route is None:
            self._send_json(h, 404, status_object(404, "NotFound", f"the server could not find the requested resource ({url.path})"))
            return
        resource, ns, name = route
        if name is not None:
            with self.lock:
                obj = self.objects.get((resource, ns, name))
            if obj is None:
                self._send_json(h, 404, status_object(404, "NotFound", f'{resource} "{name}" not found'))
            else:
                self._send_json(h, 200, obj)
            return
        labels = parse_selector(q.get("labelSelector"))
        fields = parse_selector(q.get("fieldSelector"))
        if q.get("watch") in ("1", "true"):
            self._watch(h, resource, ns, labels, fields, q)
        else:
            self._list(h, resource, ns, labels, fields, q)

    @staticmethod
    def _route(path):
        for prefix, resource in ((POD_PREFIX, "pods"), (POOL_PREFIX, "inferencepools")):
            if path.startswith(prefix):
                parts = path[len(prefix):].split("/")
                if len(parts) >= 2 and parts[1] == resource and len(parts) <= 3:
                    return resource, parts[0], (parts[2] if len(parts) == 3 else None)
        return None

    @staticmethod
    def _matches(obj, labels, fields):
        if obj is None:
            return False
        meta = obj["metadata"]
        if any(meta.get("labels", {}).get(k) != v for k, v in labels.items()):
            return False
        for k, v in fields.items():
            if k == "metadata.name" and meta["name"] != v:
                return False
            if k == "metadata.namespace" and meta["namespace"] != v:
                return False
        return True

    def _list(self, h, resource, ns, labels, fields, q):
        with self.lock:
            cont = q.get("continue", "")
            if cont and self.expire_continue_tokens > 0:
                self.expire_continue_tokens -= 1
                self._send_json(h, 410, status_object(410, "Expired", "The provided continue parameter is too old"))
                return
            items = sorted((o for (r, n, _), o in self.objects.items() if r == resource and n == ns and self._matches(o, labels, fields)),
                           key=lambda o: o["metadata"]["name"])
            offset, rv = (int(cont.split(":")[0]), cont.split(":")[1]) if cont else (0, str(self.rv))
            limit = int(q.get("limit") or 0) or len(items) or 1
            if self.page_size:
                limit = min(limit, self.page_size)
            page = items[offset:offset + limit]
            more = offset + limit < len(items)
            kind = "PodList" if resource == "pods" else "InferencePoolList"
            meta = {"resourceVersion": rv}
            if more:
                meta["continue"] = f"{offset + limit}:{rv}"
            body = {"kind": kind, "apiVersion": "v1", "metadata": meta, "items": copy.deepcopy(page)}
        self._send_json(h, 200, body)

    def _watch(self, h, resource, ns, labels, fields, q):
        rv_text = q.get("resourceVersion", "")
        timeout = float(q.get("timeoutSeconds") or 1800)
        bookmarks = q.get("allowWatchBookmarks") == "true"
        with self.lock:
            since = int(rv_text) if rv_text not in ("", "0") else None
            if since is not None and since < self.compacted_rv - 1 and self.expire_with_http_status:
                self._send_json(h, 410, status_object(410, "Expired", f"too old resource version: {since} ({self.rv})"))
                return
            expired = since is not None and since < self.compacted_rv - 1
            initial = []
            if since is None:   # no version: synthetic ADDED for the current state, then changes
                initial = [{"type": "ADDED", "object": copy.deepcopy(o)} for (r, n, _), o in self.objects.items()
                           if r == resource and n == ns and self._matches(o, labels, fields)]
                since = self.rv
            cursor = next((i for i, e in enumerate(self.log) if e[0] > since), len(self.log))
            gen, exp_gen = self.watch_generation, self.expire_generation
            self.open_watches += 1
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def send(events):
            data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        try:
            if expired:
                send([{"type": "ERROR", "object": status_object(410, "Expired", f"too old resource version: {since} ({self.rv})")}])
            else:
                if initial:
                    send(initial)
                deadline = time.time() + timeout
                while True:
                    with self.lock:
                        while (cursor >= len(self.log) and gen == self.watch_generation and exp_gen == self.expire_generation
                               and time.time() < deadline):
                            self.lock.wait(min(0.2, max(0.0, deadline - time.time())))
                        if exp_gen != self.expire_generation:
                            out = [{"type": "ERROR", "object": status_object(410, "Expired", f"too old resource version: {since} ({self.rv})")}]
                            done = True
                        elif gen != self.watch_generation or time.time() >= deadline:
                            out, done = [], True
                        else:
                            out, done = [], False
                            if cursor > len(self.log):   # history compacted under us
                                cursor = len(self.log)
                            for (rv, r, n, typ, old, new) in self.log[cursor:]:
                                if typ == "BOOKMARK":
                                    if bookmarks:
                                        out.append({"type": "BOOKMARK", "object": {"kind": "Pod" if resource == "pods" else "InferencePool",
                                                                                    "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}}})
                                    continue
                                if r != resource or n != ns:
                                    continue
                                was, now = self._matches(old, labels, fields), self._matches(new, labels, fields)
                                if typ == "DELETED":
                                    ev = "DELETED" if was else None
                                elif was and now:
                                    ev = typ
                                elif now:
                                    ev = "ADDED"
                                elif was:
                                    ev = "DELETED"
                                else:
                                    ev = None
                                if ev:
                                    out.append({"type": ev, "object": new})
                            cursor = len(self.log)
                    if out:
                        send(out)
                    if done:
                        break
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        finally:
            with self.lock:
                self.open_watches -= 1
        h.close_connection = True
