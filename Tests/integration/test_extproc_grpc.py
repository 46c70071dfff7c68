"""The epp binary against a real gRPC client (grpcio): ext_proc bidi streams, health, errors per stream, TLS."""
import queue
import ssl
import threading
import time

import grpc
import pytest

from harness import json_body, start_epp, proto_modules

ep, hp = proto_modules()
PROCESS = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
FDS = 4


def process_stub(channel):
    return channel.stream_stream(PROCESS, request_serializer=lambda m: m.SerializeToString() if hasattr(m, "SerializeToString") else m,
                                 response_deserializer=ep.ProcessingResponse.FromString)


def headers_msg(path="/v1/completions", eos=False, extra=(), subset=None):
    req = ep.ProcessingRequest()
    hs = req.request_headers.headers.headers
    for k, v in [(":path", path), (":method", "POST"), (":authority", "gw"), ("content-type", "application/json")] + list(extra):
        h = hs.add()
        h.key = k
        h.raw_value = v.encode()
    req.request_headers.end_of_stream = eos
    req.metadata_context.SetInParent()
    if subset is not None:
        req.metadata_context.filter_metadata["envoy.lb.subset_hint"].update({"x-gateway-destination-endpoint-subset": subset})
    req.protocol_config.request_body_mode = FDS
    req.protocol_config.response_body_mode = FDS
    return req


def body_msg(data, eos):
    req = ep.ProcessingRequest()
    req.request_body.body = data
    req.request_body.end_of_stream = eos
    req.metadata_context.SetInParent()
    return req


class Stream:
    """A bidi Process stream where the test sends one message at a time and reads answers as they come."""

    def __init__(self, channel):
        self.q = queue.Queue()
        self.responses = process_stub(channel)(iter(self.q.get, None))

    def send(self, msg):
        self.q.put(msg)

    def recv(self, timeout=5):
        box = {}

        def read():
            try:
                box["r"] = next(self.responses)
            except Exception as e:  # noqa: BLE001
                box["e"] = e
        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError("no response within timeout")
        if "e" in box:
            raise box["e"]
        return box["r"]

    def close(self):
        self.q.put(None)


@pytest.fixture(scope="module")
def epp():
    p = start_epp([18001, 18002, 18003])
    yield p
    assert p.stop() == 0, p.output()


def test_bidi_stream_answers_each_message_while_open(epp):
    with grpc.insecure_channel(f"127.0.0.1:{epp.grpc_port}") as ch:
        s = Stream(ch)
        s.send(headers_msg())
        body = b'{"model":"m","prompt":"hello"}'
        s.send(body_msg(body[:10], False))
        s.send(body_msg(body[10:], True))
        r1 = s.recv()
        assert r1.WhichOneof("response") == "request_headers"
        mut = r1.request_headers.response.header_mutation
        dest = {h.header.key: h.header.raw_value.decode() for h in mut.set_headers}["x-gateway-destination-endpoint"]
        assert dest in {"127.0.0.1:18001", "127.0.0.1:18002", "127.0.0.1:18003"}
        assert r1.request_headers.response.clear_route_cache
        assert r1.dynamic_metadata.fields["envoy.lb"].struct_value.fields["x-gateway-destination-endpoint"].string_value == dest
        # x-request-id was absent, so one is added
        ids = [h.header.raw_value.decode() for h in mut.set_headers if h.header.key == "x-request-id"]
        assert len(ids) == 1 and len(ids[0]) == 36
        r2 = s.recv()
        assert r2.request_body.response.body_mutation.streamed_response.body == body
        assert r2.request_body.response.body_mutation.streamed_response.end_of_stream
        # response path on the same open stream
        rh = ep.ProcessingRequest()
        h = rh.response_headers.headers.headers.add()
        h.key, h.raw_value = ":status", b"200"
        s.send(rh)
        assert s.recv().WhichOneof("response") == "response_headers"
        rb = ep.ProcessingRequest()
        rb.response_body.body = b"data: x\n\n"
        rb.response_body.end_of_stream = True
        s.send(rb)
        r = s.recv()
        assert r.response_body.response.body_mutation.streamed_response.body == b"data: x\n\n"
        s.close()
        with pytest.raises(StopIteration):
            s.recv()


def test_large_body_rechunked(epp):
    with grpc.insecure_channel(f"127.0.0.1:{epp.grpc_port}") as ch:
        s = Stream(ch)
        s.send(headers_msg())
        body = json_body(300_000)
        for off in range(0, len(body), 16384):
            s.send(body_msg(body[off:off + 16384], off + 16384 >= len(body)))
        assert s.recv().WhichOneof("response") == "request_headers"
        got = b""
        while True:
            sr = s.recv().request_body.response.body_mutation.streamed_response
            assert len(sr.body) <= 62000
            got += sr.body
            if sr.end_of_stream:
                break
        assert got == body
        s.close()


def test_malformed_protobuf_fails_only_that_stream(epp):
    with grpc.insecure_channel(f"127.0.0.1:{epp.grpc_port}") as ch:
        good = Stream(ch)
        good.send(headers_msg())
        bad = Stream(ch)
        bad.send(b"\x12\xff\xff\xff\xff\x0f")   # length-delimited field longer than the message
        with pytest.raises(grpc.RpcError) as e:
            bad.recv()
        assert e.value.code() == grpc.StatusCode.INTERNAL
        good.send(body_msg(b'{"model":"m","prompt":"x"}', True))
        assert good.recv().WhichOneof("response") == "request_headers"
        assert good.recv().request_body.response.body_mutation.streamed_response.end_of_stream
        good.close()


def test_spurious_message_gets_failed_precondition(epp):
    with grpc.insecure_channel(f"127.0.0.1:{epp.grpc_port}") as ch:
        s = Stream(ch)
        s.send(body_msg(b"x", True))   # body before headers
        with pytest.raises(grpc.RpcError) as e:
            s.recv()
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "spurious" in e.value.details()


def test_subset_hint_restricts_and_empty_match_is_503(epp):
    with grpc.insecure_channel(f"127.0.0.1:{epp.grpc_port}") as ch:
        for _ in range(5):
            s = Stream(ch)
            s.send(headers_msg(eos=True, subset=["127.0.0.1:18002"]))
            r = s.recv()
            dest = r.dynamic_metadata.fields["envoy.lb"].struct_value.fields["x-gateway-destination-endpoint"].string_value
            assert dest == "127.0.0.1:18002"
            s.close()
        s = Stream(ch)
        s.send(headers_msg(eos=True, subset=["10.9.9.9:1"]))
        r = s.recv()
        assert r.immediate_response.status.code == 503
        assert r.immediate_response.body == b"inference error: ServiceUnavailable - failed to find endpoint candidates for serving the request"


def test_unknown_method_unimplemented(epp):
    with grpc.insecure_channel(f"127.0.0.1:{epp.grpc_port}") as ch:
        f = ch.unary_unary("/no.Such/Method", request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as e:
            f(b"")
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_oversized_message_resource_exhausted():
    p = start_epp([18001], extra_args=["--max-receive-message-bytes=70000", "--max-request-body-bytes=100000"])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            s = Stream(ch)
            s.send(headers_msg())
            s.send(body_msg(b"x" * 200_000, True))
            with pytest.raises(grpc.RpcError) as e:
                s.recv()
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # a body over --max-request-body-bytes in small messages ⇒ ImmediateResponse 413
            s = Stream(ch)
            s.send(headers_msg())
            for _ in range(3):
                s.send(body_msg(b"y" * 40_000, False))
            r = s.recv()
            assert r.immediate_response.status.code == 413
    finally:
        assert p.stop() == 0


@pytest.mark.parametrize("port_attr", ["grpc_port", "health_port"])
def test_health_check_and_watch(epp, port_attr):
    with grpc.insecure_channel(f"127.0.0.1:{getattr(epp, port_attr)}") as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=hp.HealthCheckRequest.SerializeToString,
                               response_deserializer=hp.HealthCheckResponse.FromString)
        for name in ["", "liveness", "readiness", "envoy.service.ext_proc.v3.ExternalProcessor"]:
            assert check(hp.HealthCheckRequest(service=name)).status == hp.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as e:
            check(hp.HealthCheckRequest(service="nope"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        watch = ch.unary_stream("/grpc.health.v1.Health/Watch", request_serializer=hp.HealthCheckRequest.SerializeToString,
                                response_deserializer=hp.HealthCheckResponse.FromString)
        it = watch(hp.HealthCheckRequest(service="nope"))
        assert next(it).status == hp.HealthCheckResponse.SERVICE_UNKNOWN
        it.cancel()
        it = watch(hp.HealthCheckRequest(service="readiness"))
        assert next(it).status == hp.HealthCheckResponse.SERVING
        it.cancel()


def test_readiness_not_serving_without_endpoints():
    p = start_epp(None)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{p.health_port}") as ch:
            check = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=hp.HealthCheckRequest.SerializeToString,
                                   response_deserializer=hp.HealthCheckResponse.FromString)
            assert check(hp.HealthCheckRequest(service="liveness")).status == hp.HealthCheckResponse.SERVING
            assert check(hp.HealthCheckRequest(service="readiness")).status == hp.HealthCheckResponse.NOT_SERVING
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            s = Stream(ch)
            s.send(headers_msg(eos=True))
            r = s.recv()
            assert r.immediate_response.status.code == 500
            assert r.immediate_response.body == b"inference error: Internal - no pods available in datastore"
    finally:
        assert p.stop() == 0


def test_tls_with_self_signed_certificate():
    p = start_epp([18001], secure=True)
    try:
        pem = ssl.get_server_certificate(("127.0.0.1", p.grpc_port)).encode()
        creds = grpc.ssl_channel_credentials(root_certificates=pem)
        with grpc.secure_channel(f"127.0.0.1:{p.grpc_port}", creds, options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
            s = Stream(ch)
            s.send(headers_msg(eos=True))
            r = s.recv()
            assert r.WhichOneof("response") == "request_headers"
            s.close()
    finally:
        assert p.stop() == 0


def test_bad_flags_exit_2():
    import subprocess
    from harness import EPP_BIN
    for args in (["--grpc-port=99999"], ["--no-such-flag"], ["--endpoints-file=/nonexistent/x.yaml", "--secure-serving=false"],
                 ["--log-level=loud"]):
        r = subprocess.run([EPP_BIN] + args, capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (args, r.stderr)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and lines[0].startswith("epp: error:"), r.stderr
