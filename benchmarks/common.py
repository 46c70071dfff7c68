"""Shared pieces of the benchmark scripts: release builds, processes on loopback, results file."""
import datetime
import os
import platform
import re
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))
import harness  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "RESULTS.md")


def build_release(product="epp"):
    # EPP_BENCH_BIN_<PRODUCT> (e.g. EPP_BENCH_BIN_EPP) points at a binary built elsewhere;
    # EPP_BENCH_PREBUILT=1 uses the release binaries already built (e.g. while the tree is being edited)
    override = os.environ.get("EPP_BENCH_BIN_" + product.upper().replace("-", "_"))
    if override:
        return override
    if os.environ.get("EPP_BENCH_PREBUILT") != "1":
        subprocess.run(["swift", "build", "-c", "release", "--product", product], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    path = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
    return os.path.join(path, product)


def framed(msg_bytes):
    return b"\x00" + len(msg_bytes).to_bytes(4, "big") + msg_bytes


def h2load(url, data_file, requests, clients, streams, threads=1, extra_headers=(), duration=None):
    args = ["h2load", "-t", str(threads), "-c", str(clients), "-m", str(streams)]
    if duration:
        args += ["-D", str(duration), "--warm-up-time=1"]
    else:
        args += ["-n", str(requests)]
    for h in extra_headers:
        args += ["-H", h]
    if data_file:
        args += ["-d", data_file]
    args.append(url)
    out = subprocess.run(args, capture_output=True, text=True, timeout=600).stdout
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    ok = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    lat = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", out)
    if not m or not ok:
        raise RuntimeError("h2load output not understood:\n" + out)
    res = {"rps": float(m.group(3)), "total": int(ok.group(1)), "succeeded": int(ok.group(4)),
           "failed": int(ok.group(5)) + int(ok.group(6)), "raw": out}
    if lat:
        unit = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
        res["latency_min_ms"] = float(lat.group(1)) * unit[lat.group(2)]
        res["latency_max_ms"] = float(lat.group(3)) * unit[lat.group(4)]
        res["latency_mean_ms"] = float(lat.group(5)) * unit[lat.group(6)]
    return res


def cpu_seconds(pid):
    """utime+stime of a process (and its threads) in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(parts[11]) + int(parts[12])) / ticks


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def append_results(title, lines, command):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    with open(RESULTS, "a") as f:
        f.write(f"\n## {title} — {stamp}, commit {git_commit()}, {machine}\n\n`{command}`\n\n")
        for line in lines:
            f.write(line + "\n")
