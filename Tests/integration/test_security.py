"""Security properties of a real epp (RELIABILITY.md "Security"): TLS versions and ciphers on the ext_proc port,
the Redis password never in logs or metrics, no request content in logs above debug, and the routing header
only ever coming from the picker (a client-sent x-gateway-destination-endpoint is overwritten; with
failure_mode_allow it would not be, which is why the shipped Envoy config keeps it false).
mTLS with a wrong client certificate: test_tls.py test_mtls_requires_client_certificate_from_the_ca."""
import http.client
import json
import os
import time
import socket
import ssl
import subprocess
import urllib.request

import grpc
import pytest

from harness import (EPP_BIN, RecordingBackend, free_port, prometheus_values, redis_command, start_envoy, start_envoy_edited,
                     start_epp, start_redis)
from test_extproc_grpc import Stream, body_msg, headers_msg

ALLOWED_TLS12 = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305",
                 "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"}


@pytest.fixture(scope="module")
def tls_epp():
    p = start_epp([18001], secure=True)
    yield p
    assert p.stop() == 0, p.output()


def tls_client(version=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def handshake(port, ctx):
    """(protocol, cipher) of a completed handshake, or the SSL error's text."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        with ctx.wrap_socket(raw) as s:
            return s.version(), s.cipher()[0]
    except (ssl.SSLError, ConnectionError) as e:
        return str(e)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_before_1_2_is_refused(tls_epp, version):
    # SECLEVEL=0 so that the local OpenSSL is willing to offer the old version at all: the refusal must come
    # from the server (a protocol-version alert), not from our own client.
    result = handshake(tls_epp.grpc_port, tls_client(version, "ALL:@SECLEVEL=0"))
    assert isinstance(result, str), result
    assert "NO_PROTOCOLS_AVAILABLE" not in result and "NO_CIPHERS_AVAILABLE" not in result, result
    assert "PROTOCOL_VERSION" in result.upper() or "UNSUPPORTED_PROTOCOL" in result.upper(), result


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA256",
                                    "AES128-GCM-SHA256", "AES256-SHA", "DHE-RSA-AES128-GCM-SHA256"])
def test_tls12_without_ecdhe_and_aead_is_refused(tls_epp, cipher):
    result = handshake(tls_epp.grpc_port, tls_client(ssl.TLSVersion.TLSv1_2, cipher + ":@SECLEVEL=0"))
    assert isinstance(result, str), result
    assert "NO_CIPHERS_AVAILABLE" not in result, result
    assert "HANDSHAKE_FAILURE" in result.upper() or "NO_SHARED_CIPHER" in result.upper(), result


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"])
def test_tls12_modern_ciphers_are_accepted(tls_epp, cipher):
    assert handshake(tls_epp.grpc_port, tls_client(ssl.TLSVersion.TLSv1_2, cipher)) == ("TLSv1.2", cipher)


def test_default_client_gets_tls13_and_tls12_gets_an_allowed_suite(tls_epp):
    version, cipher = handshake(tls_epp.grpc_port, tls_client())
    assert version == "TLSv1.3" and cipher in {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
    version, cipher = handshake(tls_epp.grpc_port, tls_client(ssl.TLSVersion.TLSv1_2))
    assert version == "TLSv1.2" and cipher in ALLOWED_TLS12, cipher


PASSWORD = "Sup3rS3cretRedisPw"


def test_redis_password_never_in_logs_or_metrics():
    redis = start_redis()
    runs = []
    try:
        redis_command(redis.port, "CONFIG", "SET", "requirepass", PASSWORD)
        dead = free_port()
        cases = [
            f"redis://:{PASSWORD}@127.0.0.1:{redis.port}",            # right password
            f"redis://default:{PASSWORD}x@127.0.0.1:{redis.port}",    # wrong password: AUTH errors get logged
            f"redis://:{PASSWORD}@127.0.0.1:{dead}",                  # unreachable: connection errors get logged
        ]
        for url in cases:
            for fmt in ("text", "json"):
                p = start_epp([18001, 18002], extra_args=[f"--redis-url={url}", "--log-level=trace", f"--log-format={fmt}"])
                runs.append(p)
                with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
                    for i in range(3):
                        s = Stream(ch)
                        s.send(headers_msg(extra=[("x-epp-debug", "1")]))
                        s.send(body_msg(b'{"model":"m","prompt":"%s"}' % (b"shared prefix " * 40 + str(i).encode()), True))
                        s.recv(timeout=10)
                        s.close()
                with urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/metrics", timeout=5) as r:
                    metrics = r.read().decode()
                assert PASSWORD not in metrics
                # not vacuous: the password was used (connected) or refused / unreachable (errors counted)
                def total(name):
                    return sum(float(l.split(" ")[1]) for l in metrics.splitlines() if l.startswith(name))
                if url == cases[0]:
                    assert total("epp_prefix_index_redis_client_connections_total") >= 1, metrics
                else:
                    assert total("epp_prefix_index_redis_client_errors_total") >= 1, metrics
                assert p.stop() == 0, p.output()
                out = p.output()
                assert PASSWORD not in out, (url, out)
                assert "trace epp.metrics-scraper" in out or '"level":"trace"' in out, out   # trace output is there
        # a bad URL's error names the URL with the password redacted
        r = subprocess.run([EPP_BIN, f"--redis-url=redis://:{PASSWORD}@127.0.0.1:notaport", "--secure-serving=false"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "redis URL" in r.stderr and PASSWORD not in r.stderr, r.stderr
    finally:
        for p in runs:
            p.stop()
        redis.stop()


def wait_for(predicate, timeout=10, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def redis_connected_gauge(p):
    return prometheus_values(p.metrics_port, "epp_prefix_index_redis_client_connected").get("", 0.0)


def test_redis_url_from_environment_keeps_the_password_out_of_cmdline():
    redis = start_redis()
    p = None
    try:
        redis_command(redis.port, "CONFIG", "SET", "requirepass", PASSWORD)
        env = dict(os.environ, EPP_REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{redis.port}")
        p = start_epp([18001, 18002], env=env)
        with open(f"/proc/{p.proc.pid}/cmdline", "rb") as f:
            cmdline = f.read().decode()
        assert PASSWORD not in cmdline and "redis" not in cmdline, cmdline
        # the URL from the environment is used: the index's Redis connection authenticates and becomes ready
        assert wait_for(lambda: redis_connected_gauge(p) == 1), prometheus_values(p.metrics_port, "epp_prefix_index_redis_client")
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            s = Stream(ch)
            s.send(headers_msg())
            s.send(body_msg(b'{"model":"m","prompt":"%s"}' % (b"shared prefix " * 40), True))
            s.recv(timeout=10)
            s.close()
        assert wait_for(lambda: prometheus_values(p.metrics_port, "epp_prefix_index_redis_client_commands_total")
                        .get('{result="ok"}', 0) >= 1), prometheus_values(p.metrics_port, "epp_prefix_index_redis_client")
        assert p.stop() == 0, p.output()
        out = p.output()
        assert PASSWORD not in out, out
        assert f"redis redis://:***@127.0.0.1:{redis.port} connected" in out, out
    finally:
        if p:
            p.stop()
        redis.stop()


def test_redis_auth_failure_is_logged_once_without_the_password_and_recovery_at_info():
    redis = start_redis()
    p = None
    try:
        redis_command(redis.port, "CONFIG", "SET", "requirepass", PASSWORD)
        wrong = PASSWORD + "wrong"
        p = start_epp([18001, 18002], env=dict(os.environ, EPP_REDIS_URL=f"redis://:{wrong}@127.0.0.1:{redis.port}"))
        assert wait_for(lambda: "WRONGPASS" in p.output(), timeout=5), p.output()
        time.sleep(2)   # several reconnect attempts (backoff 50 ms … 2 s), each refused
        assert prometheus_values(p.metrics_port, "epp_prefix_index_redis_client_errors_total").get('{kind="handshake"}', 0) >= 2
        problems = [l for l in p.output().splitlines() if "redis" in l and "unavailable" in l]
        assert len(problems) == 1, problems   # rate-limited: one line for the failure, not one per attempt
        assert "warning" in problems[0] and "AUTH failed: WRONGPASS" in problems[0], problems
        # the password is fixed on the Redis side: the client reconnects and says so at info
        with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as s:
            s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(PASSWORD), PASSWORD.encode())
                      + b"*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$11\r\nrequirepass\r\n$%d\r\n%s\r\n" % (len(wrong), wrong.encode()))
            got = b""
            while got.count(b"\r\n") < 2:
                got += s.recv(100)
            assert got == b"+OK\r\n+OK\r\n", got
        assert wait_for(lambda: redis_connected_gauge(p) == 1, timeout=10), p.output()
        assert p.stop() == 0, p.output()
        out = p.output()
        recovered = [l for l in out.splitlines() if "connected again after" in l]
        assert len(recovered) == 1 and " info " in recovered[0], out
        assert PASSWORD not in out.replace("***", ""), out
    finally:
        if p:
            p.stop()
        redis.stop()


MARKER = "Zq7MarkerOfRequestContent"


def requests_with_content(port):
    """Successful and failing requests whose body, headers and bytes all carry MARKER."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        def one(msgs):
            s = Stream(ch)
            for m in msgs:
                s.send(m)
            try:
                s.recv(timeout=5)
            except Exception:  # noqa: BLE001 - failing streams are the point
                pass
            s.close()
        hdrs = lambda: headers_msg(extra=[("x-request-id", MARKER), ("x-user", MARKER), ("x-epp-debug", "1")])
        one([hdrs(), body_msg(('{"model":"m","prompt":"%s"}' % MARKER).encode(), True)])            # routed
        one([hdrs(), body_msg(('{"model":"%s","prompt":"x"' % MARKER).encode(), True)])            # 400 bad JSON
        one([hdrs(), body_msg(('{"prompt":"%s"}' % MARKER).encode(), True)])                        # 400 no model
        one([hdrs(), body_msg(MARKER.encode() * 50_000, False)])                                    # 413 too large
        one([hdrs(), hdrs()])                                                                      # spurious message
        s = Stream(ch)
        s.send(hdrs())
        s.close()
        # malformed protobuf carrying the marker
        raw = ch.stream_stream("/envoy.service.ext_proc.v3.ExternalProcessor/Process",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            list(raw(iter([b"\x0a\xff\xff" + MARKER.encode()]), timeout=5))
        except grpc.RpcError:
            pass


@pytest.mark.parametrize("level", ["info", "notice", "warning"])
def test_no_request_content_in_logs_above_debug(level):
    for fmt in ("text", "json"):
        p = start_epp([18001], extra_args=[f"--log-level={level}", f"--log-format={fmt}", "--max-request-body-bytes=1000000"])
        try:
            requests_with_content(p.grpc_port)
        finally:
            assert p.stop() == 0, p.output()
        assert MARKER not in p.output(), p.output()
    # the check is not vacuous: at debug the explained decision names the request id
    p = start_epp([18001], extra_args=["--log-level=debug"])
    try:
        requests_with_content(p.grpc_port)
    finally:
        p.stop()
    assert MARKER in p.output()


@pytest.fixture(scope="module")
def gateway():
    backends = [RecordingBackend() for _ in range(2)]
    evil = RecordingBackend()   # a server the client would like to reach; not an endpoint of the pool
    epp = start_epp([b.port for b in backends])
    envoy = start_envoy(epp.grpc_port)
    yield backends, evil, epp, envoy
    envoy.stop()
    assert epp.stop() == 0, epp.output()
    for b in backends + [evil]:
        b.stop()


def post(port, body, headers, method="POST"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.putrequest(method, "/v1/completions")
    for k, v in headers:
        c.putheader(k, v)
    c.putheader("content-type", "application/json")
    c.putheader("content-length", str(len(body)))
    c.endheaders(body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


@pytest.mark.parametrize("values", [1, 2])
def test_client_sent_destination_header_is_overwritten(gateway, values):
    backends, evil, epp, envoy = gateway
    spoof = [("x-gateway-destination-endpoint", f"127.0.0.1:{evil.port}")] * values + [("x-test-marker", f"spoof-{values}")]
    status, data = post(envoy.listener_port, b'{"model":"m","prompt":"route me"}', spoof)
    assert status == 200, data
    served = json.loads(data)["backend"]
    assert served in [b.port for b in backends]
    b = next(b for b in backends if b.port == served)
    with b.lock:
        req = next(r for r in b.requests if r["headers"].get("x-test-marker") == f"spoof-{values}")
    assert req["headers"]["x-gateway-destination-endpoint"] == f"127.0.0.1:{served}"   # one value: ours
    # header-only request and a request the picker rejects: still never the client's choice
    assert post(envoy.listener_port, b"", spoof, method="GET")[0] == 200
    assert post(envoy.listener_port, b'{"model":', spoof)[0] == 400
    with evil.lock:
        assert evil.requests == []


def test_failure_mode_allow_would_let_the_client_pick_the_destination():
    """Why the shipped config keeps failure_mode_allow: false. With the picker unreachable, fail-closed Envoy answers
    503 (status_on_error). Fail-open Envoy 1.40 skips ext_proc for a request without body, and ORIGINAL_DST then routes on the client's
    own header to any ip:port it names. A request with a body mostly gets the 503 in FULL_DUPLEX_STREAMED, but not
    always: depending on when the stream's failure lands it too goes to the client's server (seen in one full run).
    Either way fail-open buys no availability for LLM requests, only the bypass."""
    evil = RecordingBackend()
    nobody = free_port()   # no picker listening
    closed_gw = start_envoy(nobody)
    open_gw = start_envoy_edited(nobody, lambda cfg: cfg.replace("failure_mode_allow: false", "failure_mode_allow: true"))
    try:
        spoof = [("x-gateway-destination-endpoint", f"127.0.0.1:{evil.port}")]
        for body in (b'{"model":"m","prompt":"x"}', b""):
            assert post(closed_gw.listener_port, body, spoof)[0] == 503   # shipped config: status_on_error 503
        with evil.lock:
            assert evil.requests == []
        status, data = post(open_gw.listener_port, b'{"model":"m","prompt":"x"}', spoof)
        assert status == 503 or (status == 200 and json.loads(data)["backend"] == evil.port), (status, data)
        body_bypassed = status == 200
        status, data = post(open_gw.listener_port, b"", spoof)
        assert status == 200 and json.loads(data)["backend"] == evil.port   # the client chose the server
        with evil.lock:
            assert len(evil.requests) == 1 + body_bypassed
    finally:
        closed_gw.stop()
        open_gw.stop()
        evil.stop()
