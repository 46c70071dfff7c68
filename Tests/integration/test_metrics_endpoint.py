"""The picker's HTTP endpoints: /metrics passes promtool and reflects traffic; /healthz, /readyz; 404."""
import shutil
import subprocess
import urllib.error
import urllib.request

import grpc
import pytest

from harness import start_epp
from test_extproc_grpc import Stream, body_msg, headers_msg


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sample(text, name_with_labels):
    for line in text.splitlines():
        if line.startswith(name_with_labels + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_reflect_traffic_and_pass_promtool():
    p = start_epp([18011, 18012])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            for _ in range(3):
                s = Stream(ch)
                s.send(headers_msg())
                s.send(body_msg(b'{"model":"m","prompt":"x"}', True))
                s.recv()
                s.recv()
                s.close()
            s = Stream(ch)
            s.send(headers_msg(eos=True, subset=["10.1.1.1:1"]))
            s.recv()
            s.close()
        status, text = get(p.metrics_port, "/metrics")
        assert status == 200
        assert sample(text, 'epp_decisions_total{result="routed"}') == 3
        assert sample(text, 'epp_decisions_total{result="rejected"}') == 1
        assert sample(text, 'inference_pool_ready_pods{name=""}') == 2
        picks = sum(sample(text, f'epp_endpoint_picks_total{{endpoint="127.0.0.1:{port}"}}') or 0 for port in (18011, 18012))
        assert picks == 3
        assert sample(text, 'epp_request_processing_seconds_count{phase="body_end"}') == 3
        promtool = shutil.which("promtool")
        assert promtool, "promtool missing (apt package prometheus; .ci/run installs it)"
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        assert get(p.metrics_port, "/healthz")[0] == 200
        assert get(p.metrics_port, "/readyz")[0] == 200
        assert get(p.metrics_port, "/nope")[0] == 404
    finally:
        assert p.stop() == 0


def test_readyz_503_without_endpoints():
    p = start_epp(None)
    try:
        assert get(p.metrics_port, "/readyz")[0] == 503
        assert get(p.metrics_port, "/healthz")[0] == 200
    finally:
        assert p.stop() == 0
