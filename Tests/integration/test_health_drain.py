"""Health transitions starting → ready → draining (gRPC Check/Watch and /readyz), Envoy's active gRPC health check
against the picker, and a drain through Envoy: SIGTERM while 500 SSE responses stream ⇒ all complete, exit 0."""
import http.client
import queue
import socket
import socketserver
import threading
import time
import urllib.error
import urllib.request

import grpc

from harness import (RecordingBackend, envoy_host_health, proto_modules, start_envoy_edited, start_epp, wait_port,
                     write_endpoints)
from test_extproc_grpc import Stream, body_msg, headers_msg

ep, hp = proto_modules()
SERVING, NOT_SERVING = hp.HealthCheckResponse.SERVING, hp.HealthCheckResponse.NOT_SERVING


def readyz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def check(ch, service):
    f = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=hp.HealthCheckRequest.SerializeToString,
                       response_deserializer=hp.HealthCheckResponse.FromString)
    return f(hp.HealthCheckRequest(service=service), timeout=5).status


def wait_for(f, timeout=15, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if f():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def empty_endpoints_file():
    path = write_endpoints([])
    with open(path, "w") as f:
        f.write("endpoints: []\n")
    return path


def test_health_transitions_starting_ready_draining():
    backend = RecordingBackend()
    path = empty_endpoints_file()
    p = start_epp(None, extra_args=[f"--endpoints-file={path}", "--drain-timeout=20"])
    watch_updates = queue.Queue()
    try:
        wait_port(p.health_port)
        health_ch = grpc.insecure_channel(f"127.0.0.1:{p.health_port}")
        # starting: alive, not ready
        assert check(health_ch, "liveness") == SERVING
        assert check(health_ch, "readiness") == NOT_SERVING
        assert check(health_ch, "envoy.service.ext_proc.v3.ExternalProcessor") == NOT_SERVING
        assert readyz(p.metrics_port) == 503

        # a Watch opened now sees every later transition on its one stream
        watch = health_ch.unary_stream("/grpc.health.v1.Health/Watch", request_serializer=hp.HealthCheckRequest.SerializeToString,
                                       response_deserializer=hp.HealthCheckResponse.FromString)
        updates = watch(hp.HealthCheckRequest(service="readiness"))

        def pump():
            try:
                for u in updates:
                    watch_updates.put(u.status)
            except grpc.RpcError:
                pass
        threading.Thread(target=pump, daemon=True).start()
        assert watch_updates.get(timeout=5) == NOT_SERVING

        # ready: endpoints appear in the watched file
        write_endpoints([backend.port], path=path)
        assert watch_updates.get(timeout=10) == SERVING
        assert check(health_ch, "readiness") == SERVING
        assert readyz(p.metrics_port) == 200

        # an in-flight request, decided before the signal
        ext_ch = grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}")
        s = Stream(ext_ch)
        s.send(headers_msg())
        s.send(body_msg(b'{"model":"m","prompt":"x"}', True))
        assert s.recv().WhichOneof("response") == "request_headers"
        s.recv()

        # draining: readiness drops at once, the open stream still works
        t0 = time.time()
        p.proc.send_signal(15)
        assert watch_updates.get(timeout=5) == NOT_SERVING
        assert readyz(p.metrics_port) == 503
        updates.cancel()
        assert p.proc.poll() is None, "exited with a stream in flight"
        rh = ep.ProcessingRequest()
        h = rh.response_headers.headers.headers.add()
        h.key, h.raw_value = ":status", b"200"
        s.send(rh)
        assert s.recv().WhichOneof("response") == "response_headers"
        rb = ep.ProcessingRequest()
        rb.response_body.body = b'{"ok":true}'
        rb.response_body.end_of_stream = True
        s.send(rb)
        assert s.recv().response_body.response.body_mutation.streamed_response.body == b'{"ok":true}'
        s.close()
        ext_ch.close()
        health_ch.close()
        assert p.proc.wait(timeout=20) == 0, p.output()
        assert time.time() - t0 < 20
    finally:
        p.stop()
        backend.stop()


# Checks every 200 ms whether or not the cluster has traffic (no_traffic_interval defaults to 60 s).
FAST_HEALTH_CHECKS = ("interval: 10s\n      unhealthy_threshold: 3\n      healthy_threshold: 2",
                      "interval: 0.2s\n      no_traffic_interval: 0.2s\n      unhealthy_threshold: 1\n      healthy_threshold: 1")


def fast_health_checks(cfg):
    assert FAST_HEALTH_CHECKS[0] in cfg, "shipped Envoy config changed: update the health check edit"
    return cfg.replace(*FAST_HEALTH_CHECKS)


def test_envoy_grpc_health_check_follows_picker_readiness():
    backend = RecordingBackend()
    path = empty_endpoints_file()
    p = start_epp(None, extra_args=[f"--endpoints-file={path}", "--drain-timeout=10"])
    envoy = start_envoy_edited(p.grpc_port, fast_health_checks)
    try:
        health = lambda: envoy_host_health(envoy.admin_port, "ext_proc", p.grpc_port)   # noqa: E731
        # starting: the picker answers NOT_SERVING ⇒ Envoy marks the host failed
        wait_for(lambda: health() is not None and "failed_active_hc" in health(), what="host failed while starting")
        time.sleep(0.5)
        assert "failed_active_hc" in health()   # stays failed: not a transient
        write_endpoints([backend.port], path=path)
        wait_for(lambda: health() == "healthy", what="host healthy once ready")
        # requests flow while healthy
        c = http.client.HTTPConnection("127.0.0.1", envoy.listener_port, timeout=10)
        c.request("POST", "/v1/completions", body=b'{"model":"m","prompt":"x"}', headers={"content-type": "application/json"})
        assert c.getresponse().status == 200
        c.close()
        p.proc.send_signal(15)
        wait_for(lambda: "failed_active_hc" in (health() or ""), what="host failed after SIGTERM")
        assert p.proc.wait(timeout=15) == 0, p.output()
    finally:
        envoy.stop()
        p.stop()
        backend.stop()


class SlowSSEBackend:
    """HTTP/1.1 server answering every POST with `events` SSE events, one every `gap` seconds, then
    `data: [DONE]`. `started` counts responses that have sent their first event."""

    def __init__(self, events, gap):
        self.started = 0
        self.lock = threading.Lock()
        backend = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                while True:   # keep-alive: one request after another on this connection
                    line = self.rfile.readline()
                    if not line:
                        return
                    length = 0
                    while True:
                        h = self.rfile.readline()
                        if h in (b"\r\n", b"\n", b""):
                            break
                        k, _, v = h.decode().partition(":")
                        if k.strip().lower() == "content-length":
                            length = int(v)
                    self.rfile.read(length)
                    if line.startswith(b"GET /metrics"):   # the picker's scrape: idle model server
                        text = b"vllm:num_requests_waiting 0\nvllm:num_requests_running 0\nvllm:kv_cache_usage_perc 0\n"
                        self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(text), text))
                        self.wfile.flush()
                        continue
                    self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                    for i in range(events):
                        chunk = b'data: {"i":%d}\n\n' % i
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                        if i == 0:
                            with backend.lock:
                                backend.started += 1
                        time.sleep(gap)
                    done = b"data: [DONE]\n\n"
                    self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
                    self.wfile.flush()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 1024

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_sigterm_during_500_streaming_requests_through_envoy_all_complete():
    n, events, gap = 500, 20, 0.4   # each response streams ~8 s: SIGTERM lands while all are in flight
    backends = [SlowSSEBackend(events, gap) for _ in range(2)]
    p = start_epp([b.port for b in backends], workers=2, extra_args=["--drain-timeout=30"])
    envoy = start_envoy_edited(p.grpc_port, fast_health_checks)
    expected = b"".join(b'data: {"i":%d}\n\n' % i for i in range(events)) + b"data: [DONE]\n\n"
    results = [None] * n
    go = threading.Event()

    def client(i):
        go.wait()
        try:
            c = http.client.HTTPConnection("127.0.0.1", envoy.listener_port, timeout=60)
            c.request("POST", "/v1/completions", body=b'{"model":"m","prompt":"p%d","stream":true}' % i,
                      headers={"content-type": "application/json"})
            r = c.getresponse()
            results[i] = (r.status, r.read())
            c.close()
        except (OSError, http.client.HTTPException) as e:
            results[i] = ("error", repr(e).encode())

    try:
        wait_for(lambda: envoy_host_health(envoy.admin_port, "ext_proc", p.grpc_port) == "healthy", timeout=30,
                 what="Envoy sees the picker healthy")
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        go.set()
        started = lambda: sum(b.started for b in backends)   # noqa: E731
        try:
            wait_for(lambda: started() == n, timeout=events * gap - 2, what=f"all {n} responses streaming")
        except AssertionError:
            errors = [r for r in results if r is not None][:3]
            raise AssertionError(f"only {started()} of {n} responses streaming after {events * gap - 2} s; finished early: {errors}")
        assert all(r is None for r in results), "a response finished before the signal"
        t_term = time.time()
        p.proc.send_signal(15)
        wait_for(lambda: readyz(p.metrics_port) == 503, timeout=5, what="readiness down while draining")
        for t in threads:
            t.join(timeout=60)
        bad = [(i, r) for i, r in enumerate(results) if r != (200, expected)]
        assert not bad, f"{len(bad)} of {n} requests incomplete, e.g. {bad[:3]}"
        assert p.proc.wait(timeout=30) == 0, p.output()
        assert time.time() - t_term < 30
    finally:
        envoy.stop()
        p.stop()
        for b in backends:
            b.stop()
