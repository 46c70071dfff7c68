"""Helpers for the hostile-client tests (test_http2_abuse.py, test_limits.py): process figures from /proc, an
hyper-h2 client that speaks gRPC framing, raw HTTP/2 frames, and "is another connection still served" probes."""
import os
import socket
import struct
import time
import urllib.request

import grpc
import h2.config
import h2.connection
import h2.events

from harness import proto_modules

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROCESS = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime + stime


class Figures:
    """RSS and CPU of a process around an attack; `report()` is the line RELIABILITY.md records."""

    def __init__(self, pid, name):
        self.pid, self.name = pid, name
        self.rss_before = rss_mb(pid)
        self.cpu_before = cpu_seconds(pid)
        self.t0 = time.time()
        self.rss_peak = self.rss_before

    def sample(self):
        self.rss_peak = max(self.rss_peak, rss_mb(self.pid))

    def done(self):
        self.sample()
        self.rss_after = rss_mb(self.pid)
        self.cpu = cpu_seconds(self.pid) - self.cpu_before
        self.wall = time.time() - self.t0
        print(f"\nFIGURES {self.name}: rss_before={self.rss_before:.1f}MB rss_peak={self.rss_peak:.1f}MB "
              f"rss_after={self.rss_after:.1f}MB cpu={self.cpu:.2f}s wall={self.wall:.2f}s")
        return self


def metric(port, name, labels=""):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    key = name + ("{" + labels + "}" if labels else "")
    for line in text.splitlines():
        if line.split(" ")[0] == key:
            return float(line.split(" ")[1])
    return None


def limit_hits(p, limit):
    return metric(p.metrics_port, "epp_limit_exceeded_total", f'limit="{limit}"') or 0


def headers_request(extra=()):
    """A serialized ProcessingRequest with request_headers (FDS), as Envoy sends first on every stream."""
    ep, _ = proto_modules()
    req = ep.ProcessingRequest()
    for k, v in [(":path", "/v1/completions"), (":method", "POST"), ("content-type", "application/json")] + list(extra):
        h = req.request_headers.headers.headers.add()
        h.key, h.raw_value = k, v.encode()
    req.protocol_config.request_body_mode = 4
    req.protocol_config.response_body_mode = 4
    return req.SerializeToString()


def body_request(data, eos):
    ep, _ = proto_modules()
    req = ep.ProcessingRequest()
    req.request_body.body = data
    req.request_body.end_of_stream = eos
    return req.SerializeToString()


def grpc_frame(msg):
    return b"\x00" + struct.pack(">I", len(msg)) + msg


def grpc_headers(port, path=PROCESS, extra=()):
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", f"127.0.0.1:{port}"),
            ("content-type", "application/grpc"), ("te", "trailers")] + list(extra)


def served_by_another_connection(port):
    """A normal ext_proc request (headers + body) on a fresh grpcio channel; returns the destination."""
    ep, _ = proto_modules()
    from test_extproc_grpc import Stream, body_msg, headers_msg
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        s = Stream(ch)
        s.send(headers_msg())
        s.send(body_msg(b'{"model":"m","prompt":"still served?"}', True))
        r = s.recv(timeout=10)
        s.close()
    assert r.WhichOneof("response") == "request_headers", r
    return {h.header.key: h.header.raw_value.decode() for h in r.request_headers.response.header_mutation.set_headers}[
        "x-gateway-destination-endpoint"]


class H2Client:
    """hyper-h2 over a plain socket (h2c prior knowledge), driven by the test."""

    def __init__(self, port, settings=None, timeout=5):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.events = []
        self.closed = False
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, timeout=0.2):
        """Reads what the server sent within `timeout`; False once the server closed the connection."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return True
        except (ConnectionResetError, BrokenPipeError):
            self.closed = True
            return False
        if not data:
            self.closed = True
            return False
        self.events += self.conn.receive_data(data)
        self.flush()
        return True

    def wait(self, predicate, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [e for e in self.events if predicate(e)]
            if found:
                return found
            if not self.pump():
                found = [e for e in self.events if predicate(e)]
                return found
        return [e for e in self.events if predicate(e)]

    def goaway(self):
        return [e for e in self.events if isinstance(e, h2.events.ConnectionTerminated)]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def raw_h2c(port, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(PREFACE + frame(4, 0, 0, b""))
    return s


def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def wait_closed(sock, timeout):
    """True when the peer closes (EOF or reset) within `timeout`, reading and discarding what it sends."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            data = sock.recv(1 << 16)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not data:
            return True
    return False
