"""End to end through a real Envoy 1.40 with the shipped config: client → Envoy → epp → recording backends."""
import concurrent.futures
import hashlib
import http.client
import json
import threading
import time

import pytest

from harness import RecordingBackend, envoy_stats, json_body, start_envoy, start_epp

EXT_PROC_ERROR_STATS = ["streams_failed", "spurious_msgs_received", "message_timeouts", "failure_mode_allowed",
                        "rejected_header_mutations", "stream_msgs_failed"]


@pytest.fixture(scope="module")
def stack():
    backends = [RecordingBackend() for _ in range(3)]
    epp = start_epp([b.port for b in backends], workers=2)
    envoy = start_envoy(epp.grpc_port)
    yield backends, epp, envoy
    envoy.stop()
    assert epp.stop() == 0, epp.output()
    for b in backends:
        b.stop()


def post(port, path, body, headers=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", path, body=body, headers={"content-type": "application/json", **(headers or {})})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


def find_request(backends, marker):
    for b in backends:
        with b.lock:
            for req in b.requests:
                if req["headers"].get("x-test-marker") == marker:
                    return b, req
    return None, None


@pytest.mark.parametrize("size", [0, 1024, 300 * 1024])
def test_body_arrives_byte_identical_with_routing_header(stack, size):
    backends, epp, envoy = stack
    body = json_body(size) if size else b""   # 0 B: a POST without body (header-only for the picker)
    marker = f"body-{size}"
    status, headers, data = post(envoy.listener_port, "/v1/completions", body, {"x-test-marker": marker})
    assert status == 200, data
    b, req = find_request(backends, marker)
    assert req is not None, "no backend saw the request"
    assert req["body"] == body
    assert req["headers"]["x-gateway-destination-endpoint"] == f"127.0.0.1:{b.port}"
    assert len(req["headers"].get("x-request-id", "")) > 0
    reply = json.loads(data)
    assert reply["length"] == size and reply["sha256"] == hashlib.sha256(body).hexdigest()


def test_client_sent_destination_is_overwritten(stack):
    backends, epp, envoy = stack
    status, headers, data = post(envoy.listener_port, "/v1/completions", b'{"model":"m","prompt":"p"}',
                                 {"x-test-marker": "spoof", "x-gateway-destination-endpoint": "127.0.0.1:1"})
    assert status == 200
    b, req = find_request(backends, "spoof")
    assert req["headers"]["x-gateway-destination-endpoint"] == f"127.0.0.1:{b.port}"


def test_header_only_get_is_routed(stack):
    backends, epp, envoy = stack
    c = http.client.HTTPConnection("127.0.0.1", envoy.listener_port, timeout=30)
    c.request("GET", "/v1/models", headers={"x-test-marker": "get", "x-request-id": "given-id"})
    r = c.getresponse()
    r.read()
    assert r.status == 200
    b, req = find_request(backends, "get")
    assert req["headers"]["x-request-id"] == "given-id"


def test_sse_streams_through_in_order(stack):
    backends, epp, envoy = stack
    c = http.client.HTTPConnection("127.0.0.1", envoy.listener_port, timeout=30)
    c.request("POST", "/sse", body=b'{"model":"m","prompt":"p","stream":true}', headers={"content-type": "application/json"})
    r = c.getresponse()
    assert r.status == 200
    assert r.getheader("content-type").startswith("text/event-stream")
    arrivals = []
    buf = b""
    start = time.time()
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        arrivals.append(time.time() - start)
    events = [e for e in buf.decode().split("\n\n") if e]
    assert events == [f'data: {{"i": {i}}}' for i in range(5)]
    # Chunks were echoed as they came (the backend sleeps 50 ms between events), not buffered to the end.
    assert len(arrivals) >= 3 and arrivals[-1] - arrivals[0] > 0.1


def test_2000_requests_concurrency_32_no_errors(stack):
    backends, epp, envoy = stack
    before = envoy_stats(envoy.admin_port, "ext_proc")

    def worker(n):
        conn = http.client.HTTPConnection("127.0.0.1", envoy.listener_port, timeout=30)
        codes = []
        for i in range(n):
            # distinct prompts: no prefix affinity, so equal scores spread over the fleet
            body = json.dumps({"model": "m", "prompt": f"{i} {threading.get_ident()} " + "hello " * 50}).encode()
            status, _, data = post(envoy.listener_port, "/v1/completions", body, conn=conn)
            codes.append(status)
        conn.close()
        return codes

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(worker, [2000 // 32 + (1 if i < 2000 % 32 else 0) for i in range(32)]))
    codes = [c for r in results for c in r]
    assert len(codes) == 2000
    assert codes.count(200) == 2000, {c: codes.count(c) for c in set(codes)}
    after = envoy_stats(envoy.admin_port, "ext_proc")
    for name in EXT_PROC_ERROR_STATS:
        key = f"http.inference_gateway.ext_proc.{name}"
        assert after.get(key, 0) == 0, (key, after.get(key))
    started = after["http.inference_gateway.ext_proc.streams_started"] - before.get("http.inference_gateway.ext_proc.streams_started", 0)
    assert started >= 2000
    # No GOAWAY from the picker despite one RST_STREAM per request.
    # (Envoy counts a GOAWAY from us as a remote connection close; a reset by us as rx_reset.)
    cluster = envoy_stats(envoy.admin_port, "cluster.ext_proc.")
    assert "cluster.ext_proc.upstream_cx_destroy_remote" in cluster
    for key in ["cluster.ext_proc.upstream_cx_destroy_remote", "cluster.ext_proc.upstream_cx_protocol_error",
                "cluster.ext_proc.http2.rx_reset", "cluster.ext_proc.upstream_rq_rx_reset"]:
        assert cluster.get(key, 0) == 0, (key, cluster.get(key))
    # The load spread over all three backends (random tie-break among equal scores).
    counts = [len(b.requests) for b in backends]
    assert all(c > 100 for c in counts), counts


def test_envoy_health_checks_the_picker(stack):
    backends, epp, envoy = stack
    deadline = time.time() + 30
    while time.time() < deadline:
        s = envoy_stats(envoy.admin_port, "cluster.ext_proc.health_check")
        if s.get("cluster.ext_proc.health_check.success", 0) >= 1:
            break
        time.sleep(0.5)
    assert s.get("cluster.ext_proc.health_check.success", 0) >= 1, s
    assert s.get("cluster.ext_proc.health_check.failure", 0) == 0, s
