"""Shared helpers for the integration tests: real processes on loopback (epp, Envoy, recording backends)."""
import http.server
import json
import os
import re
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import hashlib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EPP_BIN = os.environ.get("EPP_BIN", os.path.join(ROOT, ".build", "debug", "epp"))
ENVOY_CONFIG = os.path.join(ROOT, "deploy", "envoy", "envoy-inference-gateway.yaml")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {timeout}s")


_PROTO_MODULES = None


def proto_modules():
    """Compiles proto/ with grpc_tools.protoc (real protobuf runtime) once per session."""
    global _PROTO_MODULES
    if _PROTO_MODULES is not None:
        return _PROTO_MODULES
    from grpc_tools import protoc
    import grpc_tools
    out = tempfile.mkdtemp(prefix="epp-proto-")
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    protos = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "proto")):
        protos += [os.path.relpath(os.path.join(dirpath, f), os.path.join(ROOT, "proto")) for f in files if f.endswith(".proto")]
    rc = protoc.main(["protoc", f"-I{os.path.join(ROOT, 'proto')}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"] + protos)
    assert rc == 0, "protoc failed"
    # Regular packages (with __init__.py) so an installed top-level `envoy` module cannot shadow ours.
    # (The generated grpc/health tree is loaded by file path instead: a `grpc` package here would shadow grpcio.)
    for dirpath, _, _ in os.walk(os.path.join(out, "envoy")):
        open(os.path.join(dirpath, "__init__.py"), "a").close()
    for name in [m for m in sys.modules if m == "envoy" or m.startswith("envoy.")]:
        del sys.modules[name]
    sys.path.insert(0, out)
    from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
    import importlib.util
    spec = importlib.util.spec_from_file_location("epp_health_pb2", os.path.join(out, "grpc", "health", "v1", "health_pb2.py"))
    hp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hp)
    _PROTO_MODULES = (ep, hp)
    return _PROTO_MODULES


def json_body(size, seed=1):
    """A completions request body of exactly `size` bytes (≥ 40) whose prompt holds varied text and escapes."""
    head, tail = b'{"model":"m","prompt":"', b'"}'
    alphabet = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?-()"
    filler = bytearray()
    x = seed
    while len(filler) < size - len(head) - len(tail):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        if x % 97 == 0 and len(filler) + 6 <= size - len(head) - len(tail):
            filler += b"\\u00e9"   # a JSON escape: the forwarded bytes must keep it as is
        else:
            filler.append(alphabet[x % len(alphabet)])
    body = head + bytes(filler[: size - len(head) - len(tail)]) + tail
    assert len(body) == size
    return body


class Process:
    def __init__(self, args, name, env=None):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def stop(self, sig=15, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")


def write_endpoints(ports, path=None, labels=None):
    path = path or tempfile.NamedTemporaryFile(prefix="endpoints-", suffix=".yaml", delete=False).name
    with open(path, "w") as f:
        f.write("endpoints:\n")
        for i, p in enumerate(ports):
            f.write(f"- name: backend-{i}\n  address: \"127.0.0.1\"\n  port: \"{p}\"\n")
            if labels:
                f.write("  labels:\n")
                for k, v in labels.items():
                    f.write(f"    {k}: \"{v}\"\n")
    return path


def start_epp(endpoint_ports, extra_args=(), secure=False, workers=1, env=None):
    grpc_port, health_port, metrics_port = free_port(), free_port(), free_port()
    args = [EPP_BIN, f"--grpc-port={grpc_port}", f"--grpc-health-port={health_port}", f"--metrics-port={metrics_port}",
            f"--secure-serving={'true' if secure else 'false'}", f"--workers={workers}", "--bind-address=127.0.0.1"]
    if endpoint_ports is not None:
        args.append(f"--endpoints-file={write_endpoints(endpoint_ports)}")
    args += list(extra_args)
    p = Process(args, "epp", env=env)
    p.args = args   # to restart the same picker in place
    try:
        wait_port(grpc_port)
        wait_port(metrics_port)
    except TimeoutError:
        p.stop()
        raise AssertionError("epp did not start:\n" + p.output())
    p.grpc_port, p.health_port, p.metrics_port = grpc_port, health_port, metrics_port
    return p


def start_envoy(epp_port, listener_port=None, admin_port=None, concurrency=1):
    """Envoy with the shipped config. Each worker (`concurrency`) opens its own ext_proc connection to epp."""
    listener_port = listener_port or free_port()
    admin_port = admin_port or free_port()
    with open(ENVOY_CONFIG) as f:
        cfg = f.read()
    cfg = cfg.replace("port_value: 8081", f"port_value: {listener_port}")
    cfg = cfg.replace("port_value: 19000", f"port_value: {admin_port}")
    cfg = cfg.replace("port_value: 9002", f"port_value: {epp_port}")
    path = tempfile.NamedTemporaryFile(prefix="envoy-", suffix=".yaml", delete=False).name
    with open(path, "w") as f:
        f.write(cfg)
    p = Process(["envoy", "-c", path, "--concurrency", str(concurrency), "-l", "warning", "--base-id", str(admin_port)],
                "envoy")
    try:
        wait_port(listener_port, timeout=60)
        wait_port(admin_port, timeout=60)
    except TimeoutError:
        p.stop()
        raise AssertionError("envoy did not start:\n" + p.output())
    p.listener_port, p.admin_port = listener_port, admin_port
    return p


def envoy_stats(admin_port, pattern):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats?filter={pattern}") as r:
        text = r.read().decode()
    stats = {}
    for line in text.splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            try:
                stats[k] = int(v)
            except ValueError:
                pass
    return stats


class RecordingBackend:
    """A loopback HTTP/1.1 model-server stand-in that records every request it receives.
    POST answers JSON {backend, length, sha256}; path /sse answers an SSE stream of 5 events."""

    def __init__(self, waiting=0, running=0, kv=0.0):
        self.requests = []
        self.lock = threading.Lock()
        self.metrics_up = True
        self.set_metrics(waiting, running, kv)
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self._handle(b"")

            def do_POST(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                self._handle(body)

            def _handle(self, body):
                if self.path == "/metrics":   # scraped by the picker: served, not recorded
                    if not backend.metrics_up:
                        self.send_response(503)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    text = backend.metrics_text.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                    return
                with backend.lock:
                    backend.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                if self.path.startswith("/sse"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header("x-backend-port", str(backend.port))
                    self.end_headers()
                    for i in range(5):
                        chunk = f"data: {{\"i\": {i}}}\n\n".encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                        time.sleep(0.05)
                    self.wfile.write(b"0\r\n\r\n")
                    return
                out = json.dumps({"backend": backend.port, "length": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.send_header("x-backend-port", str(backend.port))
                self.end_headers()
                self.wfile.write(out)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set_metrics(self, waiting, running, kv):
        self.metrics_text = (
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{model_name="m"}} {waiting}\n'
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="m"}} {running}\n'
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f'vllm:kv_cache_usage_perc{{model_name="m"}} {kv}\n')

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def start_redis(port=None):
    """A throw-away redis-server on loopback (no persistence). `p.port`; restart with start_redis(p.port)."""
    port = port or free_port()
    p = Process(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--protected-mode", "no", "--loglevel", "warning"], "redis")
    wait_port(port)
    p.port = port
    return p


def redis_command(port, *args):
    """One command over a fresh RESP2 connection; returns the reply (bytes, int, list, or str for status)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        f = s.makefile("rb")

        def read():
            line = f.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind == b"+":
                return rest.decode()
            if kind == b"-":
                raise RuntimeError(rest.decode())
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else f.read(n + 2)[:-2]
            if kind == b"*":
                n = int(rest)
                return None if n < 0 else [read() for _ in range(n)]
            raise RuntimeError(f"bad RESP line {line!r}")
        return read()


def prometheus_values(metrics_port, name):
    """Sum of every sample of metric `name` (any labels) on the epp /metrics page, per label set."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            key, value = line.rsplit(" ", 1)
            labels = key[len(name):]
            out[labels] = out.get(labels, 0.0) + float(value)
    return out


def start_envoy_edited(epp_port, edit):
    """start_envoy with the shipped config passed through `edit(text) -> text` first (e.g. faster health checks)."""
    listener_port, admin_port = free_port(), free_port()
    with open(ENVOY_CONFIG) as f:
        cfg = edit(f.read())
    cfg = cfg.replace("port_value: 8081", f"port_value: {listener_port}")
    cfg = cfg.replace("port_value: 19000", f"port_value: {admin_port}")
    cfg = cfg.replace("port_value: 9002", f"port_value: {epp_port}")
    path = tempfile.NamedTemporaryFile(prefix="envoy-", suffix=".yaml", delete=False).name
    with open(path, "w") as f:
        f.write(cfg)
    p = Process(["envoy", "-c", path, "--concurrency", "1", "-l", "warning", "--base-id", str(admin_port)], "envoy")
    try:
        wait_port(listener_port, timeout=60)
        wait_port(admin_port, timeout=60)
    except TimeoutError:
        p.stop()
        raise AssertionError("envoy did not start:\n" + p.output())
    p.listener_port, p.admin_port = listener_port, admin_port
    return p


def envoy_host_health(admin_port, cluster, port):
    """The health_flags of `cluster`'s host 127.0.0.1:port from Envoy's admin /clusters ("healthy", "/failed_active_hc", …)."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/clusters", timeout=5) as r:
        text = r.read().decode()
    prefix = f"{cluster}::127.0.0.1:{port}::health_flags::"
    for line in text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix):]
    return None
