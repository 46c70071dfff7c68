#!/usr/bin/env python3
"""Question: how many ext_proc routing decisions per second does one picker worker make?

Drives the release `epp` (one worker, h2c) directly with h2load: every h2load request is one ext_proc stream
carrying a prepared ProcessingRequest sequence (header-only, or headers + a 4 KB body), answered with the
routing decision (and the echoed body). Reports decisions/s and server CPU per decision.
Usage: benchmarks/bench_decisions.py [--quick]
"""
import argparse
import os
import sys
import tempfile

from common import append_results, build_release, cpu_seconds, framed, h2load, harness


def prepared_streams():
    ep, _ = harness.proto_modules()

    def headers(eos):
        r = ep.ProcessingRequest()
        for k, v in [(":path", "/v1/completions"), (":method", "POST"), (":authority", "gw"), ("content-type", "application/json")]:
            h = r.request_headers.headers.headers.add()
            h.key, h.raw_value = k, v.encode()
        r.request_headers.end_of_stream = eos
        r.metadata_context.SetInParent()
        r.protocol_config.request_body_mode = 4
        r.protocol_config.response_body_mode = 4
        return r.SerializeToString()

    body = harness.json_body(4096)   # a valid completions request of exactly 4 KB: every stream is a real decision
    b = ep.ProcessingRequest()
    b.request_body.body = body
    b.request_body.end_of_stream = True
    b.metadata_context.SetInParent()
    files = {}
    for name, data in [("header-only", framed(headers(True))), ("4KB body", framed(headers(False)) + framed(b.SerializeToString()))]:
        f = tempfile.NamedTemporaryFile(prefix="epp-bench-", suffix=".bin", delete=False)
        f.write(data)
        f.close()
        files[name] = f.name
    return files


def routed(metrics_port):
    """epp_decisions_total{result="routed"} from the picker's /metrics."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith('epp_decisions_total{result="routed"} '):
            return int(float(line.split()[-1]))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="CI-sized run")
    args = ap.parse_args()
    harness.EPP_BIN = build_release()
    requests = 20_000 if args.quick else 300_000
    files = prepared_streams()
    epp = harness.start_epp([18001, 18002, 18003, 18004], workers=1)
    lines = ["| stream | decisions/s | server CPU µs/decision | succeeded | failed |", "|---|---|---|---|---|"]
    try:
        url = f"http://127.0.0.1:{epp.grpc_port}/envoy.service.ext_proc.v3.ExternalProcessor/Process"
        for name, path in files.items():
            h2load(url, path, 2000, 10, 10, extra_headers=["content-type: application/grpc", "te: trailers"])  # warm-up
            routed0 = routed(epp.metrics_port)
            c0 = cpu_seconds(epp.proc.pid)
            res = h2load(url, path, requests, 16, 32, extra_headers=["content-type: application/grpc", "te: trailers"])
            cpu = cpu_seconds(epp.proc.pid) - c0
            decided = routed(epp.metrics_port) - routed0
            if decided != res["succeeded"]:
                raise SystemExit(f"{name}: {res['succeeded']} streams but {decided} routing decisions (rejections?)")
            per = cpu / max(res["succeeded"], 1) * 1e6
            lines.append(f"| {name} | {res['rps']:.0f} | {per:.2f} | {res['succeeded']} | {res['failed']} |")
            if res["failed"]:
                print(res["raw"], file=sys.stderr)
                raise SystemExit(f"{res['failed']} requests failed")
    finally:
        epp.stop()
    print("\n".join(lines))
    if not args.quick:
        append_results("decisions (one worker, h2load direct, release build)", lines, "python3 benchmarks/bench_decisions.py")


if __name__ == "__main__":
    main()
