"""The full picker against live endpoints: scraped metrics steer picks, unhealthy endpoints are avoided and
come back, weights hot-reloaded from the config file change decisions with zero failed requests."""
import os
import signal
import tempfile
import time

import grpc

from harness import RecordingBackend, start_epp
from test_extproc_grpc import Stream, body_msg, headers_msg


def pick(ch, prompt="hello"):
    s = Stream(ch)
    s.send(headers_msg())
    s.send(body_msg(('{"model":"m","prompt":"%s"}' % prompt).encode(), True))
    r = s.recv()
    s.recv()
    s.close()
    if r.WhichOneof("response") != "request_headers":
        raise AssertionError(f"not routed: {r}")
    return r.dynamic_metadata.fields["envoy.lb"].struct_value.fields["x-gateway-destination-endpoint"].string_value


def eventually(f, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if f():
            return True
        time.sleep(0.05)
    return False


QUEUE_ONLY = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: queue-scorer, weight: %d}
  - {pluginRef: kv-cache-utilization-scorer, weight: %d}
  - {pluginRef: max-score-picker}
"""


def test_scraped_queue_steers_and_unhealthy_endpoint_is_avoided_then_returns():
    a, b = RecordingBackend(waiting=0), RecordingBackend(waiting=50)
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    cfg.write(QUEUE_ONLY % (1, 0))
    cfg.close()
    p = start_epp([a.port, b.port], extra_args=[f"--config-file={cfg.name}", "--refresh-metrics-interval=20ms",
                                                "--metrics-staleness-threshold=300ms"])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            assert eventually(lambda: all(pick(ch, str(i)) == f"127.0.0.1:{a.port}" for i in range(10)))
            # a's metrics go away (scrapes fail) ⇒ unhealthy ⇒ b is picked although its queue is longer
            a.metrics_up = False
            assert eventually(lambda: all(pick(ch, str(i)) == f"127.0.0.1:{b.port}" for i in range(10)))
            # a comes back ⇒ picked again
            a.metrics_up = True
            assert eventually(lambda: all(pick(ch, str(i)) == f"127.0.0.1:{a.port}" for i in range(10)))
    finally:
        assert p.stop() == 0, p.output()
        a.stop()
        b.stop()


def test_hot_reload_changes_weights_without_failures():
    # a: short queue, full KV cache; b: long queue, empty KV cache.
    a, b = RecordingBackend(waiting=0, kv=0.95), RecordingBackend(waiting=20, kv=0.0)
    path = os.path.join(tempfile.mkdtemp(), "epp-config.yaml")
    with open(path, "w") as f:
        f.write(QUEUE_ONLY % (1, 0))          # queue only ⇒ a
    p = start_epp([a.port, b.port], extra_args=[f"--config-file={path}", "--refresh-metrics-interval=20ms"])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            assert eventually(lambda: pick(ch) == f"127.0.0.1:{a.port}")
            failures, picks = 0, []
            # rewrite the file atomically (as kubectl/ConfigMap updates do) while requests keep flowing
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(QUEUE_ONLY % (0, 1))      # KV only ⇒ b
            os.rename(tmp, path)
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    picks.append(pick(ch))
                except Exception:  # noqa: BLE001
                    failures += 1
                if picks[-5:] == [f"127.0.0.1:{b.port}"] * 5:
                    break
            assert failures == 0
            assert picks[-5:] == [f"127.0.0.1:{b.port}"] * 5, picks[-10:]
            # garbage ⇒ the old config stays, counted as an error
            with open(path, "w") as f:
                f.write("kind: EndpointPickerConfig\nplugins: [{type: no-such-plugin}]\n")
            os.kill(p.proc.pid, signal.SIGHUP)
            time.sleep(0.5)
            assert all(pick(ch) == f"127.0.0.1:{b.port}" for _ in range(5))
            import urllib.request
            text = urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/metrics").read().decode()
            errors = [l for l in text.splitlines() if l.startswith('epp_config_reloads_total{result="error"}')]
            assert errors and float(errors[0].split()[-1]) >= 1, errors
    finally:
        assert p.stop() == 0, p.output()
        a.stop()
        b.stop()


def test_decision_explained_on_request():
    a = RecordingBackend()
    p = start_epp([a.port])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            s = Stream(ch)
            s.send(headers_msg(extra=[("x-epp-debug", "1")]))
            s.send(body_msg(b'{"model":"m","prompt":"explain me"}', True))
            s.recv()
            s.recv()
            from harness import proto_modules
            ep, _ = proto_modules()
            rh = ep.ProcessingRequest()
            h = rh.response_headers.headers.headers.add()
            h.key, h.raw_value = ":status", b"200"
            s.send(rh)
            r = s.recv()
            hdrs = {o.header.key: o.header.raw_value.decode() for o in r.response_headers.response.header_mutation.set_headers}
            assert "x-epp-decision" in hdrs, r
            assert f"127.0.0.1:{a.port}" in hdrs["x-epp-decision"]
            s.close()
    finally:
        assert p.stop() == 0
        a.stop()
