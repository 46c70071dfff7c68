"""The reference's metric families (and ours) after a scripted set of ext_proc requests: values, labels and
buckets, not just names; the page passes `promtool check metrics`.

Script (one worker, so the 1-in-16 plugin timing samples exactly the first scheduled request):
  R1  model `alias` (rewritten to `real-model` by a modelRewrites rule), objective `premium` (priority 2),
      JSON response with usage {prompt 10, completion 5, cached 4};
  R2  model `m`, long prompt P, SSE response whose last event carries usage {prompt 7, completion 3};
  R3  the same request as R2 (its prefix is now indexed on the chosen endpoint: hit ratio 1);
  R4  invalid JSON ⇒ 400 BadRequest (refused before scheduling);
  R5  model `m` with a subset hint naming no known endpoint ⇒ 503 (a failed scheduling attempt);
  R6  model `m`, decided and held open ⇒ running_requests 1, then 0 once the stream closes.
Then two config changes, each followed by SIGHUP (one good, one bad).
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import grpc

from harness import RecordingBackend, free_port, start_epp
from test_extproc_grpc import Stream, body_msg, ep, headers_msg

CONFIG = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: prefix-cache-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: queue-scorer, weight: 1}
  - {pluginRef: prefix-cache-scorer, weight: 1}
  - {pluginRef: max-score-picker}
objectives:
- {name: premium, priority: 2}
modelRewrites:
- {model: alias, targets: [{model: real-model, weight: 1}]}
"""

PROMPT = "".join(chr(97 + (i * 7) % 26) for i in range(1000))
R1_PROMPT = "q" * 300                                            # shares no block with PROMPT
R6_PROMPT = "".join(chr(65 + (i * 5) % 26) for i in range(300))  # neither


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def parse(text):
    """{(name, frozenset(labels.items())): value} for every sample; HELP/TYPE per family."""
    samples, helps, types = {}, {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, h = line[7:].partition(" ")
            helps[name] = h
        elif line.startswith("# TYPE "):
            name, _, t = line[7:].partition(" ")
            types[name] = t
        elif line:
            m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
            assert m, f"unparsable sample line {line!r}"
            labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            samples[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return samples, helps, types


def value(samples, metric, **labels):
    return samples.get((metric, frozenset(labels.items())))


def series(samples, name):
    """Every label set of `name` with its value."""
    return {k[1]: v for k, v in samples.items() if k[0] == name}


def request(ch, model, prompt="hi", objective=None, subset=None):
    extra = [("x-request-id", f"req-{model}-{time.monotonic_ns()}")]
    if objective:
        extra.append(("x-gateway-inference-objective", objective))
    s = Stream(ch)
    s.send(headers_msg(extra=extra, subset=subset))
    body = ('{"model":"%s","prompt":"%s","max_tokens":10}' % (model, prompt)).encode()
    s.send(body_msg(body, True))
    first = s.recv()
    return s, first, body


def respond(s, content_type, chunks):
    rh = ep.ProcessingRequest()
    for k, v in ((":status", "200"), ("content-type", content_type)):
        h = rh.response_headers.headers.headers.add()
        h.key, h.raw_value = k, v.encode()
    s.send(rh)
    assert s.recv().WhichOneof("response") == "response_headers"
    for i, c in enumerate(chunks):
        rb = ep.ProcessingRequest()
        rb.response_body.body = c
        rb.response_body.end_of_stream = i == len(chunks) - 1
        s.send(rb)
        assert s.recv().WhichOneof("response") == "response_body"


def routed_to(first):
    assert first.WhichOneof("response") == "request_headers", first
    return first.dynamic_metadata.fields["envoy.lb"].struct_value.fields["x-gateway-destination-endpoint"].string_value


def wait_for(f, timeout=10, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if f():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_reference_metric_families_after_scripted_requests():
    a, b = RecordingBackend(waiting=1, running=3, kv=0.5), RecordingBackend(waiting=5, running=1, kv=0.25)
    dead = free_port()   # nothing listens: its scrapes fail
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    cfg.write(CONFIG)
    cfg.close()
    env_commit = "0123abcd"
    os.environ["EPP_COMMIT"], os.environ["EPP_BUILD_REF"] = env_commit, "v-test"
    try:
        p = start_epp([a.port, b.port, dead], extra_args=[f"--config-file={cfg.name}", "--refresh-metrics-interval=20ms"])
    finally:
        del os.environ["EPP_COMMIT"], os.environ["EPP_BUILD_REF"]
    try:
        # both live backends scraped, the dead one failed at least once
        def scraped():
            s, _, _ = parse(scrape(p.metrics_port))
            return value(s, "inference_pool_average_queue_size", name="") == 3.0 and \
                sum(series(s, "epp_metrics_scrape_errors_total").values()) >= 1
        wait_for(scraped, what="first scrapes")

        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            # R1: rewrite + priority + JSON usage
            s, first, r1_body = request(ch, "alias", prompt=R1_PROMPT, objective="premium")
            assert routed_to(first) == f"127.0.0.1:{a.port}"   # lowest queue
            s.recv()   # request body
            r1_resp = b'{"id":"x","model":"real-model","choices":[{"text":"hello"}],' \
                      b'"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}'
            respond(s, "application/json", [r1_resp])
            s.close()
            # R2, R3: same long prompt, SSE with usage in the last event
            sse = [b'data: {"choices":[{"text":"a"}]}\n\n',
                   b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\ndata: [DONE]\n\n']
            dests = []
            for _ in range(2):
                s, first, r2_body = request(ch, "m", prompt=PROMPT)
                dests.append(routed_to(first))
                s.recv()
                respond(s, "text/event-stream", sse)
                s.close()
            assert dests[0] == dests[1] == f"127.0.0.1:{a.port}"
            # R4: invalid JSON
            s = Stream(ch)
            s.send(headers_msg(extra=[("x-request-id", "bad-json")]))
            s.send(body_msg(b"no healthy upstream", True))
            r = s.recv()
            assert r.immediate_response.status.code == 400
            s.close()
            # R5: subset hint with no known endpoint
            s, first, _ = request(ch, "m", subset=["10.9.9.9:1"])
            assert first.immediate_response.status.code == 503
            s.close()
            # R6: held open
            s6, first, r6_body = request(ch, "m", prompt=R6_PROMPT)
            routed_to(first)
            s6.recv()
            samples, _, _ = parse(scrape(p.metrics_port))
            assert value(samples, "inference_objective_running_requests", model_name="m") == 1
            assert value(samples, "inference_objective_running_requests", model_name="alias") == 0
            s6.close()
            wait_for(lambda: value(parse(scrape(p.metrics_port))[0], "inference_objective_running_requests", model_name="m") == 0,
                     what="running_requests back to 0")

        # config reloads: one good (rewrite), one bad
        with open(cfg.name, "w") as f:
            f.write(CONFIG.replace("priority: 2", "priority: 3"))
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: value(parse(scrape(p.metrics_port))[0], "epp_config_reloads_total", result="success") >= 1,
                 what="good reload counted")
        with open(cfg.name, "w") as f:
            f.write("plugins: [{type: no-such-plugin}]\n")
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: value(parse(scrape(p.metrics_port))[0], "epp_config_reloads_total", result="error") >= 1,
                 what="bad reload counted")

        text = scrape(p.metrics_port)
        samples, helps, types = parse(text)
        v = lambda metric, **l: value(samples, metric, **l)   # noqa: E731
        alias = dict(model_name="alias", target_model_name="real-model")
        m = dict(model_name="m", target_model_name="m")

        # every family has HELP and TYPE
        families = {re.sub(r"_(bucket|sum|count)$", "", k[0]) if types.get(re.sub(r"_(bucket|sum|count)$", "", k[0])) == "histogram" else k[0]
                    for k in samples}
        for fam in families:
            assert fam in helps and helps[fam], f"{fam} has no HELP"
            assert fam in types, f"{fam} has no TYPE"

        # inference_objective_*
        assert v("inference_objective_request_total", priority="2", **alias) == 1
        assert v("inference_objective_request_total", priority="0", **m) == 3   # R2, R3, R6
        assert types["inference_objective_request_total"] == "counter"
        assert v("inference_objective_request_error_total", model_name="", target_model_name="", error_code="BadRequest") == 1
        assert v("inference_objective_request_error_total", error_code="ServiceUnavailable", **m) == 1
        assert v("inference_objective_request_sizes_count", **alias) == 1
        assert v("inference_objective_request_sizes_sum", **alias) == len(r1_body)
        assert v("inference_objective_request_sizes_sum", **m) == 2 * len(r2_body) + len(r6_body)
        assert 256 < len(r1_body) <= 512
        assert v("inference_objective_request_sizes_bucket", le="256", **alias) == 0
        assert v("inference_objective_request_sizes_bucket", le="512", **alias) == 1
        assert v("inference_objective_response_sizes_sum", **alias) == len(r1_resp)
        assert v("inference_objective_response_sizes_sum", **m) == 2 * sum(len(c) for c in sse)
        assert v("inference_objective_response_sizes_bucket", le="32778", **m) == 2
        assert v("inference_objective_input_tokens_sum", **alias) == 10
        assert v("inference_objective_input_tokens_bucket", le="8", **alias) == 0
        assert v("inference_objective_input_tokens_bucket", le="16", **alias) == 1
        assert v("inference_objective_output_tokens_sum", **alias) == 5
        assert v("inference_objective_prompt_cached_tokens_sum", **alias) == 4
        assert v("inference_objective_prompt_cached_tokens_count", **alias) == 1
        assert v("inference_objective_input_tokens_count", **m) == 2 and v("inference_objective_input_tokens_sum", **m) == 14
        assert v("inference_objective_output_tokens_sum", **m) == 6
        assert v("inference_objective_prompt_cached_tokens_count", **m) in (None, 0)   # no cached_tokens reported
        # durations: one per completed response (R6 never got one)
        assert v("inference_objective_request_duration_seconds_count", **alias) == 1
        assert v("inference_objective_request_duration_seconds_count", **m) == 2
        assert 0 < v("inference_objective_request_duration_seconds_sum", **m) < 10
        assert v("inference_objective_request_duration_seconds_bucket", le="3600", **m) == 2
        assert v("inference_objective_normalized_time_per_output_token_seconds_count", **m) == 2
        assert v("inference_objective_normalized_time_per_output_token_seconds_sum", **m) <= \
            v("inference_objective_request_duration_seconds_sum", **m) / 3 + 1e-6
        assert v("inference_objective_running_requests", model_name="m") == 0

        # inference_pool_*: averages over the two fresh endpoints; the dead one counts as known, not fresh
        assert v("inference_pool_ready_pods", name="") == 3
        assert v("inference_pool_average_kv_cache_utilization", name="") == 0.375
        assert v("inference_pool_average_queue_size", name="") == 3
        assert v("inference_pool_average_running_requests", name="") == 2
        assert v("inference_pool_per_pod_queue_size", model_server_pod="backend-0", name="") == 1
        assert v("inference_pool_per_pod_queue_size", model_server_pod="backend-1", name="") == 5

        # inference_extension_*
        attempts = series(samples, "inference_extension_scheduler_attempts_total")
        ns = [dict(k) for k in attempts if dict(k)["status"] == "success"][0]["namespace"]
        ok = dict(status="success", pod_name="backend-0", namespace=ns, port=str(a.port))
        assert v("inference_extension_scheduler_attempts_total", target_model_name="real-model", **ok) == 1
        assert v("inference_extension_scheduler_attempts_total", target_model_name="m", **ok) == 3
        assert v("inference_extension_scheduler_attempts_total", status="failure", target_model_name="m",
                 pod_name="", namespace="", port="") == 1
        assert sum(attempts.values()) == 5
        assert v("inference_extension_scheduler_e2e_duration_seconds_count") == 5   # not R4: refused before scheduling
        assert v("inference_extension_scheduler_e2e_duration_seconds_bucket", le="0.1") <= 5
        # prefix: R1, R2 and R6 miss; R3 matches every block of R2 on the same endpoint
        assert v("inference_extension_prefix_indexer_hit_ratio_count") == 4
        assert v("inference_extension_prefix_indexer_hit_ratio_sum") == 1.0
        assert v("inference_extension_prefix_indexer_hit_ratio_bucket", le="0") == 3
        assert v("inference_extension_prefix_indexer_hit_ratio_bucket", le="0.9") == 3
        assert v("inference_extension_prefix_indexer_hit_ratio_bucket", le="1") == 4
        hit_bytes = v("inference_extension_prefix_indexer_hit_bytes_sum")   # R3's blocks x block size x 4
        assert hit_bytes > 0 and hit_bytes % 64 == 0 and hit_bytes <= len(PROMPT) + 64
        assert v("inference_extension_prefix_indexer_hit_bytes_count") == 4
        assert v("inference_extension_prefix_indexer_size") > 0
        plugin = series(samples, "inference_extension_plugin_duration_seconds_count")
        points = {dict(k)["extension_point"]: val for k, val in plugin.items()}
        assert points.get("ProfileHandler") == 1, plugin   # sampled: only the first scheduled request of the loop
        assert points.get("DataProducer") == 1, plugin
        assert v("inference_extension_model_rewrite_decisions_total", model_rewrite_name="alias", model_name="alias",
                 target_model="real-model") == 1
        assert v("inference_extension_info", commit=env_commit, build_ref="v-test") == 1

        # ours
        assert v("epp_decisions_total", result="routed") == 4
        assert v("epp_decisions_total", result="rejected") == 2
        assert v("epp_extproc_streams_total") == 6
        assert v("epp_request_processing_seconds_count", phase="headers") == 4
        assert v("epp_request_processing_seconds_count", phase="body_end") == 4
        assert v("epp_endpoint_picks_total", endpoint=f"127.0.0.1:{a.port}") == 4
        # the file watcher may count a change besides the SIGHUP: at least one each
        assert v("epp_config_reloads_total", result="success") >= 1
        assert v("epp_config_reloads_total", result="error") >= 1
        assert v("epp_metrics_scrape_errors_total", endpoint="backend-2") >= 1

        promtool = shutil.which("promtool")
        assert promtool, "promtool missing (Debian package prometheus)"
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        rc = p.stop()
        a.stop()
        b.stop()
        assert rc == 0, p.output()


REDIS_CONFIG = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: approx-prefix-cache-producer
  parameters: {indexBackend: redis, lookupBudget: 500ms}
- type: prefix-cache-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: prefix-cache-scorer, weight: 1}
  - {pluginRef: max-score-picker}
"""


def test_redis_latency_families_with_shared_prefix_index():
    from harness import start_redis
    a, b = RecordingBackend(), RecordingBackend()   # two candidates: one alone needs no lookup
    redis = start_redis()
    p = start_epp([a.port, b.port], extra_args=[f"--config-text={REDIS_CONFIG}", f"--redis-url=redis://127.0.0.1:{redis.port}"])
    try:
        wait_for(lambda: value(parse(scrape(p.metrics_port))[0], "epp_prefix_index_redis_client_connected") == 1,
                 what="Redis connected")
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            for _ in range(3):
                s, first, _ = request(ch, "m", prompt=PROMPT)
                routed_to(first)
                s.recv()
                s.close()
        text = scrape(p.metrics_port)
        samples, _, _ = parse(text)
        v = lambda metric, **l: value(samples, metric, **l)   # noqa: E731
        # one lookup round trip per request, each timed; commands = lookups + records (+ script loads)
        assert v("epp_prefix_index_redis_round_trips_total", op="lookup") == 3
        assert v("epp_prefix_index_redis_lookup_duration_seconds_count") == 3
        assert 0 < v("epp_prefix_index_redis_lookup_duration_seconds_sum") < 1.5
        commands = v("epp_prefix_index_redis_client_command_duration_seconds_count")
        assert commands == v("epp_prefix_index_redis_client_commands_total", result="ok")   # every command timed
        assert commands >= 3 + v("epp_prefix_index_redis_round_trips_total", op="record") >= 4
        assert v("epp_prefix_index_redis_client_command_duration_seconds_sum") > 0
        # the 2nd and 3rd requests found the 1st one's blocks in Redis
        assert v("epp_prefix_index_redis_hit_ratio_count") == 3
        assert v("epp_prefix_index_redis_hit_ratio_sum") == 2.0
        assert sum(series(samples, "epp_prefix_index_redis_fallbacks_total").values()) == 0
        r = subprocess.run([shutil.which("promtool"), "check", "metrics"], input=text, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        rc = p.stop()
        redis.stop()
        a.stop()
        b.stop()
        assert rc == 0, p.output()


def test_model_server_5xx_counts_as_model_server_error():
    a = RecordingBackend()
    p = start_epp([a.port])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            for status in ("503", "400"):
                s, first, _ = request(ch, "m")
                routed_to(first)
                s.recv()
                rh = ep.ProcessingRequest()
                h = rh.response_headers.headers.headers.add()
                h.key, h.raw_value = ":status", status.encode()
                s.send(rh)
                assert s.recv().WhichOneof("response") == "response_headers"
                rb = ep.ProcessingRequest()
                rb.response_body.body = b'{"error":"x"}'
                rb.response_body.end_of_stream = True
                s.send(rb)
                s.recv()
                s.close()
        samples, _, _ = parse(scrape(p.metrics_port))
        m = dict(model_name="m", target_model_name="m")
        assert value(samples, "inference_objective_request_error_total", error_code="ModelServerError", **m) == 1   # 503 only
        assert sum(series(samples, "inference_objective_request_error_total").values()) == 1
        assert value(samples, "inference_objective_request_total", priority="0", **m) == 2
        assert value(samples, "inference_objective_request_duration_seconds_count", **m) == 2
    finally:
        rc = p.stop()
        a.stop()
        assert rc == 0, p.output()
