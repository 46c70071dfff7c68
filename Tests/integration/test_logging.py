"""--log-format json|text: every stderr line of a real epp run is one record; request-path lines carry the request id."""
import json
import subprocess

import grpc

from harness import EPP_BIN, free_port, start_epp
from test_extproc_grpc import Stream, body_msg, headers_msg


def decide(port, extra_headers):
    """One FDS request through ext_proc; returns the header mutation of the routing decision."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        s = Stream(ch)
        s.send(headers_msg(extra=extra_headers))
        s.send(body_msg(b'{"model":"m","prompt":"hello there"}', True))
        r = s.recv()
        assert r.WhichOneof("response") == "request_headers", r
        s.close()
        return {h.header.key: h.header.raw_value.decode() for h in r.request_headers.response.header_mutation.set_headers}


def json_records(p):
    records = []
    for line in p.output().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)   # every line must be a complete JSON object
        assert isinstance(rec, dict), line
        for key in ("ts", "level", "logger", "message"):
            assert isinstance(rec.get(key), str) and rec[key] != "" or key == "message", (key, line)
        assert rec["ts"].endswith("Z") and rec["ts"][10] == "T", rec["ts"]
        records.append(rec)
    return records


def test_json_lines_carry_request_id():
    p = start_epp([18001, 18002], extra_args=["--log-format=json", "--log-level=debug"])
    try:
        decide(p.grpc_port, [("x-request-id", "req-abc-123"), ("x-epp-debug", "1")])
        # Without x-request-id the picker makes one and adds it upstream; the log line names that same id.
        made = decide(p.grpc_port, [("x-epp-debug", "1")])["x-request-id"]
        # Not explained (no x-epp-debug): no per-request line at all.
        decide(p.grpc_port, [("x-request-id", "req-quiet")])
    finally:
        assert p.stop() == 0, p.output()
    records = json_records(p)
    assert any(r["message"] == "epp listening" and r["logger"] == "epp" and r["level"] == "info" for r in records)
    decisions = [r for r in records if r["message"] == "decision"]
    assert {r.get("request_id") for r in decisions} == {"req-abc-123", made}, decisions
    for r in decisions:
        assert r["level"] == "debug" and r["logger"] == "epp.scheduler"
        assert "pick 127.0.0.1:1800" in r["decision"]
    assert not any(r.get("request_id") == "req-quiet" for r in records)


def test_info_level_has_no_per_request_lines():
    p = start_epp([18001], extra_args=["--log-format=json", "--log-level=info"])
    try:
        for i in range(5):
            decide(p.grpc_port, [("x-request-id", f"req-{i}"), ("x-epp-debug", "1")])
    finally:
        assert p.stop() == 0, p.output()
    records = json_records(p)
    assert records, "expected at least the start-up lines"
    assert not any("request_id" in r for r in records), records


def test_text_format_one_line_per_record():
    p = start_epp([18001], extra_args=["--log-format=text", "--log-level=debug"])
    try:
        decide(p.grpc_port, [("x-request-id", "req-text-1"), ("x-epp-debug", "1")])
    finally:
        assert p.stop() == 0, p.output()
    lines = [l for l in p.output().splitlines() if " debug epp.scheduler: decision" in l]
    assert len(lines) == 1, p.output()
    assert "request_id=req-text-1" in lines[0]
    # every line starts with an RFC 3339 timestamp and a level
    for line in p.output().splitlines():
        ts, level = line.split(" ")[:2]
        assert ts.endswith("Z") and ts[10] == "T", line
        assert level in ("trace", "debug", "info", "notice", "warning", "error", "critical"), line


def test_bad_log_format_exits_2():
    r = subprocess.run([EPP_BIN, "--log-format=xml", f"--grpc-port={free_port()}", "--secure-serving=false"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "--log-format must be text or json" in r.stderr, r.stderr


BAD_CONFIG = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: "no\\"such\\ttype\\nx"\n'


def wait_for_line(p, needle, timeout=10):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        if needle in p.output():
            return
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} not logged:\n{p.output()}")


def test_quotes_tabs_and_newlines_in_values_stay_inside_one_record(tmp_path):
    """A failed config reload logs the loader's error, which quotes the bad plugin type verbatim."""
    for fmt in ("json", "text"):
        cfg = tmp_path / f"config-{fmt}.yaml"
        cfg.write_text("apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n"
                       "- type: max-score-picker\nschedulingProfiles:\n- name: default\n  plugins:\n"
                       "  - pluginRef: queue-scorer\n  - pluginRef: max-score-picker\n")
        p = start_epp([18001], extra_args=[f"--log-format={fmt}", f"--config-file={cfg}"])
        try:
            cfg.write_text(BAD_CONFIG)
            p.proc.send_signal(1)   # SIGHUP: deterministic even if the file watch started after the write
            wait_for_line(p, "config reload failed")
        finally:
            assert p.stop() == 0, p.output()
        if fmt == "json":
            recs = [r for r in json_records(p) if r["message"].startswith("config reload failed")]
            assert recs and all(r["level"] == "error" and 'no"such\ttype\nx' in r["error"] for r in recs), recs
        else:
            lines = [l for l in p.output().splitlines() if "config reload failed" in l]
            assert lines and all('no"such\ttype\\nx' in l for l in lines), lines
