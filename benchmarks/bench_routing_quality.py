#!/usr/bin/env python3
"""Question: does the picker route for cache hits better than round robin and the best peer routers?

One simulated vLLM fleet (epp-sim: N servers whose KV cache holds about two prompt groups each), the same
seeded workloads (epp-load shared-prefix and multi-turn, streaming) through:
  (a) Envoy round robin (no ext_proc), (b) Envoy + epp with the default config, (c) Envoy + epp with the
  prefix-heavy config (deploy/examples/prefix-heavy.yaml), (d) sglang-router cache_aware, (e) vllm-router
  cache_aware (both from PyPI in a venv made by this script).
The fleet is restarted before every run (cold caches). Reports prefix hit rate, TTFT p50/p99, req/s.
Usage: benchmarks/bench_routing_quality.py [--quick] [--no-peers] [--workloads shared-prefix,multi-turn]
       [--setups a,b,c,d,e] [--system-prompt-tokens N] [--kv-blocks shared-prefix=N,multi-turn=M]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import yaml

from common import ROOT, append_results, build_release, harness

VENV = os.path.join(ROOT, ".build-bench-venv")


def envoy_round_robin_config(sim_ports):
    with open(harness.ENVOY_CONFIG) as f:
        cfg = yaml.safe_load(f)
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.ext_proc"]
    hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = "sims"
    cfg["static_resources"]["clusters"] = [{
        "name": "sims", "type": "STATIC", "lb_policy": "ROUND_ROBIN", "connect_timeout": "5s",
        "load_assignment": {"cluster_name": "sims", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}} for p in sim_ports]}]}}]
    path = tempfile.NamedTemporaryFile(prefix="envoy-rr-", suffix=".yaml", delete=False).name
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def ensure_peer_venv():
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "sglang-router==0.3.2", "vllm-router==0.1.17"],
                   check=True)
    return os.path.join(VENV, "bin")


class Fleet:
    def __init__(self, sim_bin, count, kv_blocks, time_scale, extra=()):
        # epp-sim takes consecutive ports: find a free run
        base = harness.free_port()
        while not all(_free(base + i) for i in range(count)):
            base = harness.free_port()
        self.ports = [base + i for i in range(count)]
        self.proc = harness.Process([sim_bin, "--count", str(count), "--port", str(base), "--kv-blocks", str(kv_blocks),
                                     "--max-num-seqs", "8", "--time-scale", str(time_scale), *extra], "sim")
        for p in self.ports:
            harness.wait_port(p, 60)

    def stop(self):
        self.proc.stop()


def _free(port):
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def run_load(load_bin, target, workload, args, out_json):
    cmd = [load_bin, "--target", target, "--workload", workload, "--stream", "--quiet", "--seed", "7",
           "--groups", str(args["groups"]), "--prompts-per-group", str(args["prompts"]),
           "--system-prompt-tokens", str(args["system"]),
           "--question-tokens", "64", "--output-tokens", "16", "--concurrency", str(args["concurrency"]), "--json", out_json]
    if workload == "multi-turn":
        cmd += ["--api", "chat"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=1200)
    with open(out_json) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-peers", action="store_true", help="skip sglang-router / vllm-router")
    ap.add_argument("--workloads", default="shared-prefix,multi-turn")
    ap.add_argument("--setups", default="a,b,c,d,e", help="letters of the setups to run (a must be in for the ratios)")
    ap.add_argument("--system-prompt-tokens", type=int, default=1000)
    ap.add_argument("--kv-blocks", default="", help="per workload, e.g. shared-prefix=320,multi-turn=400")
    opts = ap.parse_args()
    workloads = [w for w in opts.workloads.split(",") if w]
    wanted = set(opts.setups.split(","))
    harness.EPP_BIN = build_release("epp")
    sim_bin, load_bin = build_release("epp-sim"), build_release("epp-load")
    size = {"groups": 8, "prompts": 6, "concurrency": 8} if opts.quick else {"groups": 8, "prompts": 25, "concurrency": 8}
    size["system"] = opts.system_prompt_tokens
    # Each simulator's cache holds about two groups: a shared-prefix group is ~160 blocks (1000-token system
    # prompt + its questions), a multi-turn conversation grows to ~190 blocks over its turns.
    servers, time_scale = 4, (0.1 if opts.quick else 0.25)
    kv_blocks_for = {"shared-prefix": 320, "multi-turn": 400}
    for item in filter(None, opts.kv_blocks.split(",")):
        k, v = item.split("=")
        kv_blocks_for[k] = int(v)
    if not wanted & {"d", "e"}:
        opts.no_peers = True
    peers_bin = None if opts.no_peers else ensure_peer_venv()

    setups = ["(a) Envoy round robin", "(b) Envoy + epp default", "(c) Envoy + epp prefix-heavy"]
    if peers_bin:
        setups += ["(d) sglang-router cache_aware", "(e) vllm-router cache_aware"]
    setups = [s for s in setups if s[1] in wanted]
    results = {}
    for workload in workloads:
        for setup in setups:
            kv_blocks = kv_blocks_for[workload]
            fleet = Fleet(sim_bin, servers, kv_blocks, time_scale)
            procs = []
            try:
                if setup.startswith("(a)"):
                    original = harness.ENVOY_CONFIG
                    harness.ENVOY_CONFIG = envoy_round_robin_config(fleet.ports)
                    envoy = harness.start_envoy(epp_port=1)
                    harness.ENVOY_CONFIG = original
                    procs.append(envoy)
                    target = f"http://127.0.0.1:{envoy.listener_port}"
                elif setup.startswith("(b)") or setup.startswith("(c)"):
                    extra = ["--config-file", os.path.join(ROOT, "deploy", "examples", "prefix-heavy.yaml")] if setup.startswith("(c)") else []
                    epp = harness.start_epp(fleet.ports, extra_args=extra, workers=1)
                    envoy = harness.start_envoy(epp.grpc_port)
                    procs += [envoy, epp]
                    target = f"http://127.0.0.1:{envoy.listener_port}"
                else:
                    port, prom = harness.free_port(), harness.free_port()
                    urls = [f"http://127.0.0.1:{p}" for p in fleet.ports]
                    if setup.startswith("(d)"):
                        cmd = [os.path.join(peers_bin, "sglang-router"), "launch", "--host", "127.0.0.1", "--port", str(port),
                               "--worker-urls", *urls, "--policy", "cache_aware", "--prometheus-host", "127.0.0.1",
                               "--prometheus-port", str(prom), "--log-level", "warn"]
                    else:
                        cmd = [os.path.join(peers_bin, "vllm-router"), "--host", "127.0.0.1", "--port", str(port),
                               "--worker-urls", *urls, "--policy", "cache_aware", "--prometheus-port", str(prom)]
                    procs.append(harness.Process(cmd, "peer"))
                    harness.wait_port(port, 60)
                    time.sleep(1.0)
                    target = f"http://127.0.0.1:{port}"
                out = tempfile.NamedTemporaryFile(prefix="load-", suffix=".json", delete=False).name
                results[(workload, setup)] = run_load(load_bin, target, workload, size, out)
            finally:
                for p in procs:
                    p.stop()
                fleet.stop()

    lines = []
    for workload in workloads:
        lines += [f"**{workload}** ({size['groups']} groups × {size['prompts']}, c={size['concurrency']}, {servers} sims × {kv_blocks_for[workload]} blocks, "
                  f"{size['system']}-token system prompts, stream)", "",
                  "| setup | prefix hit rate | TTFT p50 ms | TTFT p99 ms | req/s | errors | purity |", "|---|---|---|---|---|---|---|"]
        for setup in setups:
            r = results[(workload, setup)]
            lines.append(f"| {setup} | {r.get('prefix_hit_rate') or 0:.3f} | {r['ttft_ms']['p50']:.1f} | {r['ttft_ms']['p99']:.1f} | "
                         f"{r['requests_per_second']:.1f} | {r['errors']} | {r.get('group_purity') or 0:.2f} |")
        lines.append("")
        by = {s[1]: results[(workload, s)] for s in setups}
        for mine, label in (("b", "epp default"), ("c", "epp prefix-heavy")):
            if mine not in by:
                continue
            ours = by[mine]
            if "a" in by:
                lines.append(f"TTFT p50 round robin ÷ {label} = {by['a']['ttft_ms']['p50'] / max(ours['ttft_ms']['p50'], 1e-9):.2f}×")
            if "d" in by:
                sg = by["d"]
                lines.append(f"hit rate {label} − sglang-router = {(ours.get('prefix_hit_rate') or 0) - (sg.get('prefix_hit_rate') or 0):+.3f}; "
                             f"TTFT p50 {label} ÷ sglang-router = {ours['ttft_ms']['p50'] / max(sg['ttft_ms']['p50'], 1e-9):.2f}")
        lines.append("")
    print("\n".join(lines))
    if not opts.quick:
        append_results("routing-quality", lines, "python3 " + " ".join(["benchmarks/bench_routing_quality.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
