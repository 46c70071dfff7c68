"""Kubernetes discovery of the epp binary against fake_kube_apiserver.py (no kube-apiserver can run here; the fake
speaks the real list/watch wire format: chunked newline-delimited watch events, resourceVersion, 410 Expired).

The picker's endpoint set is observed through its behaviour: an ext_proc request restricted (subset hint) to one
ip:port is routed there iff that endpoint is known, and 503s otherwise; plus `inference_pool_ready_pods` and /readyz.
"""
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import grpc
import pytest

import base64

from fake_kube_apiserver import FakeKubeAPIServer, make_client_cert, make_self_signed_cert
from harness import EPP_BIN, proto_modules, start_epp

ep, _ = proto_modules()
PROCESS = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
TOKEN = "s3cr3t-token"
DECODE_ONLY_CONFIG = """apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: decode-filter
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: decode-filter
  - pluginRef: max-score-picker
"""


def write_kubeconfig(server, token=TOKEN, ca_file=None, ca_data=None, insecure=False, extra_user=""):
    path = tempfile.NamedTemporaryFile(prefix="kubeconfig-", suffix=".yaml", delete=False).name
    cluster = f'server: "{server}"'
    if ca_file:
        cluster += f', certificate-authority: "{ca_file}"'
    if ca_data:
        cluster += f', certificate-authority-data: "{ca_data}"'
    if insecure:
        cluster += ", insecure-skip-tls-verify: true"
    user = f'token: "{token}"' if token else ""
    if extra_user:
        user = (user + ", " if user else "") + extra_user
    with open(path, "w") as f:
        f.write(f"""apiVersion: v1
kind: Config
current-context: test
contexts:
- name: other
  context: {{cluster: nowhere, user: nobody}}
- name: test
  context: {{cluster: fake, user: tester, namespace: default}}
clusters:
- name: fake
  cluster: {{{cluster}}}
users:
- name: tester
  user: {{{user}}}
""")
    return path


def metrics_text(p):
    with urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(p, prefix):
    """Sum of the samples whose name+labels start with `prefix`."""
    total = 0.0
    for line in metrics_text(p).splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ready(p):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/readyz", timeout=5) as r:
            return r.status == 200
    except urllib.error.HTTPError:
        return False


def pick(p, host_port):
    """Routes one header-only request restricted to `host_port`; returns the destination or the HTTP status."""
    req = ep.ProcessingRequest()
    for k, v in [(":path", "/v1/completions"), (":method", "POST"), (":authority", "gw")]:
        h = req.request_headers.headers.headers.add()
        h.key, h.raw_value = k, v.encode()
    req.request_headers.end_of_stream = True
    req.metadata_context.filter_metadata["envoy.lb.subset_hint"].update({"x-gateway-destination-endpoint-subset": [host_port]})
    with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
        call = ch.stream_stream(PROCESS, request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=ep.ProcessingResponse.FromString)
        r = next(call(iter([req]), timeout=5))
    if r.WhichOneof("response") == "immediate_response":
        return r.immediate_response.status.code
    return r.dynamic_metadata.fields["envoy.lb"].struct_value.fields["x-gateway-destination-endpoint"].string_value


def known(p, candidates):
    """The subset of `candidates` (ip:port) the picker routes to."""
    return {c for c in candidates if pick(p, c) == c}


def wait_for(cond, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def wait_known(p, candidates, expected, timeout=10.0):
    expected = set(expected)
    wait_for(lambda: known(p, candidates) == expected, timeout, f"endpoints {sorted(expected)}")


@pytest.fixture
def api():
    s = FakeKubeAPIServer(token=TOKEN)
    yield s
    s.stop()


def start_selector_epp(api, extra=()):
    kc = write_kubeconfig(api.url)
    return start_epp(None, extra_args=["--endpoint-selector=app=vllm,tier=gpu", "--endpoint-target-ports=8000",
                                       f"--kubeconfig={kc}", "--log-level=debug", *extra])


GPU = {"app": "vllm", "tier": "gpu"}
ALL = ["127.0.0.2:8000", "127.0.0.3:8000", "127.0.0.4:8000", "127.0.0.5:8000", "127.0.0.6:8000"]


def test_selector_add_update_delete(api):
    api.put_pod("ready-a", ip="127.0.0.2", labels=GPU)
    api.put_pod("not-ready-b", ip="127.0.0.3", labels=GPU, ready=False)
    api.put_pod("no-ip", ip=None, labels=GPU)
    api.put_pod("terminating", ip="127.0.0.5", labels=GPU, deleting=True)
    api.put_pod("other-app", ip="127.0.0.6", labels={"app": "other", "tier": "gpu"})
    p = start_selector_epp(api)
    try:
        wait_known(p, ALL, {"127.0.0.2:8000"})
        assert metric(p, "inference_pool_ready_pods") == 1
        assert ready(p)
        # the selector went to the server, and the watch asked for bookmarks and a server-side timeout
        lists = [q for path, q in api.requests if path == "/api/v1/namespaces/default/pods" and "watch" not in q]
        watches = [q for path, q in api.requests if path == "/api/v1/namespaces/default/pods" and q.get("watch") == "1"]
        assert lists[0]["labelSelector"] in ("app=vllm,tier=gpu", "tier=gpu,app=vllm")
        assert watches and watches[0]["allowWatchBookmarks"] == "true" and int(watches[0]["timeoutSeconds"]) > 0
        assert watches[0]["resourceVersion"] == str(api.rv)

        # add: a new ready pod
        api.put_pod("ready-d", ip="127.0.0.4", labels=GPU)
        wait_known(p, ALL, {"127.0.0.2:8000", "127.0.0.4:8000"})
        # update: not ready → ready
        api.put_pod("not-ready-b", ip="127.0.0.3", labels=GPU, ready=True)
        wait_known(p, ALL, {"127.0.0.2:8000", "127.0.0.3:8000", "127.0.0.4:8000"})
        # update: ready → not ready, and labels no longer matching (the watch delivers DELETED)
        api.put_pod("ready-d", ip="127.0.0.4", labels=GPU, ready=False)
        api.put_pod("ready-a", ip="127.0.0.2", labels={"app": "vllm", "tier": "cpu"})
        wait_known(p, ALL, {"127.0.0.3:8000"})
        # graceful deletion (deletionTimestamp) removes at once; the final DELETED keeps it removed
        api.put_pod("not-ready-b", ip="127.0.0.3", labels=GPU, deleting=True)
        wait_known(p, ALL, set())
        api.delete_pod("not-ready-b")
        assert metric(p, "inference_pool_ready_pods") == 0
        wait_for(lambda: not ready(p), what="not ready with no endpoints")
        # all that came over one list and one watch
        assert api.count_requests("pods", watch=False) == 1
    finally:
        assert p.stop() == 0, p.output()


def test_labels_are_carried_to_endpoints(api):
    api.put_pod("decode-0", ip="127.0.0.2", labels={**GPU, "llm-d.ai/role": "decode"})
    api.put_pod("prefill-0", ip="127.0.0.3", labels={**GPU, "llm-d.ai/role": "prefill"})
    p = start_selector_epp(api, extra=[f"--config-text={DECODE_ONLY_CONFIG}"])
    try:
        wait_for(lambda: metric(p, "inference_pool_ready_pods") == 2, what="2 endpoints")
        assert pick(p, "127.0.0.2:8000") == "127.0.0.2:8000"
        # the prefill pod is known but the decode filter drops it: its role label came along
        assert pick(p, "127.0.0.3:8000") == 429
        api.put_pod("prefill-0", ip="127.0.0.3", labels={**GPU, "llm-d.ai/role": "prefill-decode"})
        wait_for(lambda: pick(p, "127.0.0.3:8000") == "127.0.0.3:8000", what="relabelled pod routable")
    finally:
        assert p.stop() == 0, p.output()


def test_watch_expiry_error_event_relists(api):
    api.put_pod("a", ip="127.0.0.2", labels=GPU)
    p = start_selector_epp(api)
    try:
        wait_known(p, ALL, {"127.0.0.2:8000"})
        # changes whose events are lost (compacted away): only a relist can see them
        api.put_pod("b", ip="127.0.0.3", labels=GPU, record=False)
        api.delete_pod("a", record=False)
        api.expire_watches()   # open watch gets ERROR {code: 410, reason: Expired}
        wait_known(p, ALL, {"127.0.0.3:8000"})
        assert api.count_requests("pods", watch=False) == 2
        assert metric(p, 'epp_kubernetes_watch_restarts_total{resource="pods",reason="expired"}') == 1
        # and the new watch works
        api.put_pod("c", ip="127.0.0.4", labels=GPU)
        wait_known(p, ALL, {"127.0.0.3:8000", "127.0.0.4:8000"})
    finally:
        assert p.stop() == 0, p.output()


def test_watch_resume_with_expired_version_gets_http_410_and_relists(api):
    api.expire_with_http_status = True
    api.put_pod("a", ip="127.0.0.2", labels=GPU)
    p = start_selector_epp(api)
    try:
        wait_known(p, ALL, {"127.0.0.2:8000"})
        api.put_pod("b", ip="127.0.0.3", labels=GPU, record=False)
        api.compact()
        api.close_watches()    # normal end; resuming from the old version ⇒ HTTP 410
        wait_known(p, ALL, {"127.0.0.2:8000", "127.0.0.3:8000"})
        assert api.count_requests("pods", watch=False) == 2
        assert metric(p, 'epp_kubernetes_watch_restarts_total{resource="pods",reason="expired"}') == 1
    finally:
        assert p.stop() == 0, p.output()


def test_watch_timeout_resumes_from_bookmark_without_relist(api):
    api.put_pod("a", ip="127.0.0.2", labels=GPU)
    p = start_selector_epp(api)
    try:
        wait_known(p, ALL, {"127.0.0.2:8000"})
        api.put_pod("unrelated", ip="127.0.0.9", labels={"app": "x"})   # moves the version on; not in our watch
        api.send_bookmark()
        wait_for(lambda: metric(p, 'epp_kubernetes_watch_events_total{resource="pods",type="BOOKMARK"}') == 1, what="bookmark seen")
        api.close_watches()   # as at timeoutSeconds
        wait_for(lambda: api.count_requests("pods", watch=True) == 2, what="rewatch")
        last_watch = [q for path, q in api.requests if path.endswith("/pods") and q.get("watch") == "1"][-1]
        assert last_watch["resourceVersion"] == str(api.rv)   # the bookmark's version
        assert api.count_requests("pods", watch=False) == 1
        api.put_pod("b", ip="127.0.0.3", labels=GPU)
        wait_known(p, ALL, {"127.0.0.2:8000", "127.0.0.3:8000"})
    finally:
        assert p.stop() == 0, p.output()


def test_paged_list_and_expired_continue_token(api):
    api.page_size = 2
    for i in range(5):
        api.put_pod(f"pod-{i}", ip=f"127.0.0.{i + 2}", labels=GPU)
    api.expire_continue_tokens = 1   # the first continued page is gone: the list restarts from the top
    p = start_selector_epp(api)
    try:
        wait_known(p, ALL, set(ALL))
        lists = [q for path, q in api.requests if path.endswith("/pods") and "watch" not in q]
        assert [bool(q.get("continue")) for q in lists] == [False, True, False, True, True]
        assert all(q["limit"] == "500" for q in lists)
        # a server that keeps expiring us gets backoff, not a hot list loop
        api.expire_continue_tokens = 10_000
        before = api.count_requests("pods", watch=False)
        api.expire_watches()
        time.sleep(2.5)
        assert api.count_requests("pods", watch=False) - before < 20
        assert known(p, ALL) == set(ALL)   # the last good set stays while relisting fails
        api.expire_continue_tokens = 0
        api.put_pod("pod-0", ip="127.0.0.2", labels=GPU, ready=False, record=False)
        wait_known(p, ALL, set(ALL[1:]), timeout=20)
    finally:
        assert p.stop() == 0, p.output()


def test_api_errors_retry_until_authorised(api):
    api.token = "not-yet"
    api.put_pod("a", ip="127.0.0.2", labels=GPU)
    p = start_selector_epp(api)
    try:
        wait_for(lambda: api.count_requests("pods", watch=False) >= 2, what="retried lists")
        assert not ready(p)
        assert metric(p, "inference_pool_ready_pods") == 0
        api.token = TOKEN
        wait_known(p, ALL, {"127.0.0.2:8000"})
        assert ready(p)
        assert "Kubernetes API request failed" in p.output() and "401" in p.output()
    finally:
        assert p.stop() == 0, p.output()


@pytest.fixture
def https_api():
    s = FakeKubeAPIServer(token=TOKEN, https=True)
    yield s
    s.stop()


PORTS = ["127.0.0.2:8000", "127.0.0.2:8001", "127.0.0.3:8000", "127.0.0.3:8001", "127.0.0.2:9000", "127.0.0.3:9000"]


def test_inference_pool_over_https_with_ca_and_token(https_api):
    api = https_api
    api.put_pool("my-pool", {"app": "a"}, [8000, 8001])
    api.put_pod("a-0", ip="127.0.0.2", labels={"app": "a"})
    api.put_pod("b-0", ip="127.0.0.3", labels={"app": "b"})
    kc = write_kubeconfig(api.url, ca_file=api.ca_file)
    p = start_epp(None, extra_args=["--pool-name=my-pool", "--pool-namespace=default", f"--kubeconfig={kc}", "--log-level=debug"])
    try:
        # one endpoint per (pod, target port), named <pod>-rank-<i>
        wait_known(p, PORTS, {"127.0.0.2:8000", "127.0.0.2:8001"})
        wait_for(lambda: "a-0-rank-0,a-0-rank-1" in p.output(), what="rank names logged")
        pool_lists = [q for path, q in api.requests if path.endswith("/inferencepools") and "watch" not in q]
        assert pool_lists[0]["fieldSelector"] == "metadata.name=my-pool"
        # selector and ports change: the pod watch restarts with the new selector
        api.put_pool("my-pool", {"app": "b"}, [9000])
        wait_known(p, PORTS, {"127.0.0.3:9000"})
        # ports only
        api.put_pool("my-pool", {"app": "b"}, [8000, 8001])
        wait_known(p, PORTS, {"127.0.0.3:8000", "127.0.0.3:8001"})
        # the active-ports annotation narrows a pod's ports
        api.put_pod("b-0", ip="127.0.0.3", labels={"app": "b"}, annotations={"inference.networking.k8s.io/active-ports": "8001"})
        wait_known(p, PORTS, {"127.0.0.3:8001"})
        # pool gone ⇒ no endpoints, not ready
        api.delete_pool("my-pool")
        wait_known(p, PORTS, set())
        wait_for(lambda: not ready(p), what="not ready")
        # an invalid pool routes nowhere (and says why)
        api.put_pool("my-pool", None, None, raw_spec={"selector": {"matchLabels": {}}, "targetPorts": [{"number": 8000}]})
        wait_for(lambda: "matchLabels is empty" in p.output(), what="invalid pool logged")
        assert known(p, PORTS) == set()
        api.put_pool("my-pool", {"app": "a"}, [9000])
        wait_known(p, PORTS, {"127.0.0.2:9000"})
        assert ready(p)
    finally:
        assert p.stop() == 0, p.output()


def test_pool_created_after_start(api):
    kc = write_kubeconfig(api.url)
    api.put_pod("a-0", ip="127.0.0.2", labels={"app": "a"})
    p = start_epp(None, extra_args=["--pool-name=late-pool", f"--kubeconfig={kc}"])
    try:
        wait_for(lambda: "late-pool not found" in p.output(), what="missing pool logged")
        assert not ready(p)
        api.put_pool("late-pool", {"app": "a"}, [8000])
        wait_known(p, ["127.0.0.2:8000"], {"127.0.0.2:8000"})
        assert ready(p)
    finally:
        assert p.stop() == 0, p.output()


def test_https_without_trusted_ca_never_connects(https_api):
    api = https_api
    api.put_pod("a", ip="127.0.0.2", labels=GPU)
    kc = write_kubeconfig(api.url)   # no CA: the self-signed certificate must be rejected
    p = start_epp(None, extra_args=["--endpoint-selector=app=vllm", "--endpoint-target-ports=8000", f"--kubeconfig={kc}"])
    try:
        wait_for(lambda: "Kubernetes API request failed" in p.output(), what="TLS failure logged")
        assert known(p, ["127.0.0.2:8000"]) == set()
        assert api.count_requests("pods", watch=False) == 0   # no request got through the handshake
    finally:
        assert p.stop() == 0, p.output()


def test_client_certificate_auth_with_inline_pem_data():
    """kubeconfig with certificate-authority-data, client-certificate-data and client-key-data (no token)."""
    d = tempfile.mkdtemp(prefix="kube-mtls-")
    client_ca, client_ca_key = make_self_signed_cert(d)
    cert, key = make_client_cert(d, client_ca, client_ca_key)
    api = FakeKubeAPIServer(https=True, client_ca=client_ca)
    try:
        api.put_pod("a", ip="127.0.0.2", labels=GPU)
        b64 = lambda path: base64.b64encode(open(path, "rb").read()).decode()
        kc = write_kubeconfig(api.url, token=None, ca_data=b64(api.ca_file),
                              extra_user=f'client-certificate-data: "{b64(cert)}", client-key-data: "{b64(key)}"')
        p = start_epp(None, extra_args=["--endpoint-selector=app=vllm", "--endpoint-target-ports=8000", f"--kubeconfig={kc}"])
        try:
            wait_known(p, ["127.0.0.2:8000"], {"127.0.0.2:8000"})
        finally:
            assert p.stop() == 0, p.output()
        # without the client certificate the handshake fails: nothing is discovered
        kc = write_kubeconfig(api.url, token=None, ca_data=b64(api.ca_file))
        p = start_epp(None, extra_args=["--endpoint-selector=app=vllm", "--endpoint-target-ports=8000", f"--kubeconfig={kc}"])
        try:
            wait_for(lambda: "Kubernetes API request failed" in p.output(), what="TLS failure logged")
            assert known(p, ["127.0.0.2:8000"]) == set()
        finally:
            assert p.stop() == 0, p.output()
    finally:
        api.stop()


def run_epp_expecting_error(args, env=None):
    r = subprocess.run([EPP_BIN, "--grpc-port=0", "--grpc-health-port=0", "--metrics-port=0", "--secure-serving=false", *args],
                       capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("epp: error: "), r.stderr
    return lines[0]


def test_bad_kubeconfig_and_flag_combinations_exit_2(api):
    d = tempfile.mkdtemp(prefix="kube-bad-")
    missing = os.path.join(d, "missing.yaml")
    assert "cannot read" in run_epp_expecting_error(["--pool-name=p", f"--kubeconfig={missing}"])
    garbage = os.path.join(d, "garbage.yaml")
    with open(garbage, "w") as f:
        f.write("clusters: [unclosed\n")
    assert "not valid YAML" in run_epp_expecting_error(["--pool-name=p", f"--kubeconfig={garbage}"])
    no_ctx = os.path.join(d, "noctx.yaml")
    with open(no_ctx, "w") as f:
        f.write("apiVersion: v1\nkind: Config\nclusters: []\n")
    assert "current-context" in run_epp_expecting_error(["--pool-name=p", f"--kubeconfig={no_ctx}"])
    exec_kc = write_kubeconfig(api.url, token=None, extra_user="exec: {command: aws}")
    assert "exec" in run_epp_expecting_error(["--pool-name=p", f"--kubeconfig={exec_kc}"])
    bad_ca = write_kubeconfig(api.url, ca_file=os.path.join(d, "nope.crt"))
    assert "certificate-authority" in run_epp_expecting_error(["--pool-name=p", f"--kubeconfig={bad_ca}"])
    env = {k: v for k, v in os.environ.items() if k not in ("KUBERNETES_SERVICE_HOST", "KUBECONFIG")}
    assert "--kubeconfig" in run_epp_expecting_error(["--pool-name=p"], env=env)
    good = write_kubeconfig(api.url)
    ep_file = os.path.join(d, "endpoints.yaml")
    with open(ep_file, "w") as f:
        f.write("endpoints: []\n")
    assert "mutually exclusive" in run_epp_expecting_error([f"--endpoints-file={ep_file}", "--pool-name=p", f"--kubeconfig={good}"])
    assert "mutually exclusive" in run_epp_expecting_error(["--pool-name=p", "--endpoint-selector=a=b", f"--kubeconfig={good}"])
    assert "--endpoint-target-ports" in run_epp_expecting_error(["--endpoint-selector=app=x", f"--kubeconfig={good}"])
    assert "--endpoint-selector" in run_epp_expecting_error(["--endpoint-selector=app", "--endpoint-target-ports=8000"])
    assert "1..65535" in run_epp_expecting_error(["--endpoint-selector=app=x", "--endpoint-target-ports=8000,99999"])
    assert "spec.targetPorts" in run_epp_expecting_error(["--pool-name=p", "--endpoint-target-ports=8000", f"--kubeconfig={good}"])
    assert "needs --pool-name" in run_epp_expecting_error([f"--kubeconfig={good}"])
    assert "not a valid object name" in run_epp_expecting_error(["--pool-name=Bad_Name", f"--kubeconfig={good}"])
    assert api.requests == []   # none of these started discovery
