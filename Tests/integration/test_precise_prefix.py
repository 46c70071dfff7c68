"""precise-prefix-cache-scorer through a real epp: a redis-server holding fixture entries in the llm-d layout
(kv-index.md §3.1, written here the way the llm-d KV-events indexer writes them), render_server.py as the
tokenizer, requests over ext_proc. Requests must land on the pod holding the longest prefix of their blocks; a
stalled render endpoint costs at most renderTimeout and the request is still routed."""
import json
import os
import sys
import time
import urllib.request

import grpc

from harness import RecordingBackend, prometheus_values, redis_command, start_epp, start_redis, free_port, wait_port, Process
from test_extproc_grpc import Stream, body_msg, headers_msg

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIG = """
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: decode-filter
- type: precise-prefix-cache-scorer
  parameters:
    renderURL: http://127.0.0.1:%(render)d
    renderTimeout: %(timeout)s
    lookupBudget: 200ms
    tokenProcessorConfig: {blockSize: 16, hashSeed: "42"}
    indexerConfig:
      kvBlockIndexConfig: {redisConfig: {address: "127.0.0.1:%(redis)d"}, enableMetrics: true}
    kvEventsConfig: {zmqEndpoint: "tcp://*:5557", topicFilter: "kv@", concurrency: 4, discoverPods: false}
- type: kv-cache-utilization-scorer
- type: queue-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins: [{pluginRef: decode-filter}, {pluginRef: precise-prefix-cache-scorer, weight: 2},
            {pluginRef: kv-cache-utilization-scorer, weight: 1}, {pluginRef: queue-scorer, weight: 1},
            {pluginRef: max-score-picker}]
"""


# --- an independent implementation of the llm-d request keys (kv-index.md §2.1) -------------------------
def _head(major, v):
    m = major << 5
    if v < 24:
        return bytes([m | v])
    for code, n in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if v < 1 << (8 * n):
            return bytes([m | code]) + v.to_bytes(n, "big")


def _fnv(b):
    h = 0xCBF29CE484222325
    for x in b:
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _cbor(parent, tokens, model=None):
    out = b"\x83" + _head(0, parent)
    out += b"\xf6" if tokens is None else _head(4, len(tokens)) + b"".join(_head(0, t) for t in tokens)
    if model is None:
        return out + b"\xf6"
    m = model.encode()
    return out + _head(3, len(m)) + m


def request_keys(tokens, model="m", seed="42", block=16):
    parent = _fnv(_cbor(_fnv(seed.encode()), None, model))
    keys = []
    for i in range(len(tokens) // block):
        parent = _fnv(_cbor(parent, tokens[i * block:(i + 1) * block]))
        keys.append(parent)
    return keys


assert request_keys(list(range(32)), seed="42") == [12512726660350923543, 17905512622017703015]   # §2.2
assert request_keys(list(range(32)), seed="") == [7711063176051622293, 3714816549193055456]


def entry(pod, tier="gpu"):
    """Go json.Marshal(PodEntry) — the exact field bytes llm-d writes."""
    return json.dumps({"PodIdentifier": pod, "DeviceTier": tier, "Speculative": False, "HasGroup": False,
                       "GroupIdx": 0}, separators=(",", ":"))


def hold(redis_port, keys, pod, tier="gpu"):
    for k in keys:
        redis_command(redis_port, "HSET", str(k), entry(pod, tier), "")


def start_render(stall=False):
    port = free_port()
    p = Process([sys.executable, os.path.join(HERE, "render_server.py"), "--port", str(port)] + (["--stall"] if stall else []),
                "render")
    wait_port(port)
    p.port = port
    return p


def pick(ch, body, path="/v1/completions"):
    s = Stream(ch)
    s.send(headers_msg(path=path))
    s.send(body_msg(json.dumps(body).encode(), True))
    r = s.recv(timeout=10)
    s.recv(timeout=10)
    s.close()
    if r.WhichOneof("response") != "request_headers":
        raise AssertionError(f"not routed: {r}")
    return r.dynamic_metadata.fields["envoy.lb"].struct_value.fields["x-gateway-destination-endpoint"].string_value


def words(ids):
    return " ".join(str(i) for i in ids)


def test_requests_land_on_the_pod_holding_the_longest_prefix():
    backends = [RecordingBackend() for _ in range(4)]
    pods = [f"127.0.0.1:{b.port}" for b in backends]
    redis = start_redis()
    render = start_render()
    # Document A: tokens 0..95 (6 blocks). pod0 holds 2 blocks, pod1 all 6, pod2 blocks 2-6 (no first block).
    doc_a = list(range(96))
    keys_a = request_keys(doc_a)
    hold(redis.port, keys_a[:2], pods[0])
    hold(redis.port, keys_a, pods[1])
    hold(redis.port, keys_a[1:], pods[2])
    # Document B: tokens 500..563 (4 blocks). pod3 holds all 4 on CPU (0.8), pod0 3 on GPU (0.75), pod1 one.
    doc_b = list(range(500, 564))
    keys_b = request_keys(doc_b)
    hold(redis.port, keys_b, pods[3], "cpu")
    hold(redis.port, keys_b[:3], pods[0])
    hold(redis.port, keys_b[:1], pods[1])
    # A chat conversation: render_server renders [user=2, words…, 9]; pod2 holds both blocks.
    chat_ids = [2] + list(range(700, 730)) + [9]
    hold(redis.port, request_keys(chat_ids), pods[2])

    p = start_epp([b.port for b in backends],
                  extra_args=[f"--config-text={CONFIG % {'render': render.port, 'redis': redis.port, 'timeout': '2s'}}"])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            # No warm-up: the loop's Redis connection opens on the first request, which waits for it (lookupBudget).
            got_a = [pick(ch, {"model": "m", "prompt": words(doc_a) + f" question {i}"}) for i in range(10)]
            got_b = [pick(ch, {"model": "m", "prompt": words(doc_b) + f" other {i}", "max_tokens": 5}) for i in range(10)]
            got_chat = [pick(ch, {"model": "m", "messages": [{"role": "user", "content": words(chat_ids[1:-1])}]},
                             path="/v1/chat/completions") for _ in range(3)]
            # An unknown prompt scores 0 everywhere: still routed (by the load scorers).
            other = pick(ch, {"model": "m", "prompt": words(range(9000, 9064))})
        outcomes = prometheus_values(p.metrics_port, "epp_precise_prefix_requests_total")
        cache = prometheus_values(p.metrics_port, "epp_precise_prefix_render_cache_total")
        page = urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/metrics", timeout=5).read().decode()
    finally:
        assert p.stop() == 0, p.output()
        redis.stop()
        render.stop()
        for b in backends:
            b.stop()
    print(f"\nA -> {set(got_a)}, B -> {set(got_b)}, chat -> {set(got_chat)}, unknown -> {other}; outcomes {outcomes}; cache {cache}")
    assert got_a == [pods[1]] * 10
    assert got_b == [pods[3]] * 10
    assert got_chat == [pods[2]] * 3
    assert other in pods
    assert outcomes.get('{outcome="scored"}', 0) >= 24
    assert outcomes.get('{outcome="render_timeout"}', 0) == 0 and outcomes.get('{outcome="redis_error"}', 0) == 0
    assert cache.get('{result="hit"}', 0) >= 2   # the repeated chat request skipped the render call
    assert "# TYPE epp_precise_prefix_requests_total counter" in page
    assert "# HELP epp_precise_prefix_render_duration_seconds" in page


def test_a_stalled_render_endpoint_is_bounded_by_the_timeout():
    backends = [RecordingBackend() for _ in range(2)]
    redis = start_redis()
    render = start_render(stall=True)
    p = start_epp([b.port for b in backends],
                  extra_args=[f"--config-text={CONFIG % {'render': render.port, 'redis': redis.port, 'timeout': '100ms'}}"])
    took = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            pick(ch, {"model": "m", "prompt": "warm up"})
            for i in range(5):
                t0 = time.monotonic()
                dest = pick(ch, {"model": "m", "prompt": words(range(64)) + f" q {i}"})
                took.append(time.monotonic() - t0)
                assert dest in [f"127.0.0.1:{b.port}" for b in backends]
        outcomes = prometheus_values(p.metrics_port, "epp_precise_prefix_requests_total")
    finally:
        assert p.stop() == 0, p.output()
        redis.stop()
        render.stop()
        for b in backends:
            b.stop()
    print(f"\nstalled render: decisions took {[round(t * 1e3) for t in took]} ms; outcomes {outcomes}")
    assert all(0.09 <= t < 0.6 for t in took), took
    assert outcomes.get('{outcome="render_timeout"}', 0) == 6
