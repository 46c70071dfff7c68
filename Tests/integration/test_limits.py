"""Each client-controlled limit of a real epp, exceeded on purpose: the clear error it gives, that only the offender
is affected, and the counter in epp_limit_exceeded_total. (Body size and gRPC message size: test_extproc_grpc.py
test_oversized_message_resource_exhausted.)"""
import os
import resource
import socket
import subprocess
import time

import grpc
import h2.errors
import h2.events
import h2.settings
import pytest

from harness import EPP_BIN, free_port, start_epp
from hostile import (H2Client, body_request, cpu_seconds, grpc_frame, grpc_headers, headers_request, limit_hits, metric,
                     served_by_another_connection, wait_closed)
from test_extproc_grpc import Stream, body_msg, headers_msg, ep


def grpc_status(events, sid):
    """(grpc-status, grpc-message) from the trailers (or Trailers-Only headers) of stream `sid`."""
    for e in events:
        if isinstance(e, (h2.events.TrailersReceived, h2.events.ResponseReceived)) and e.stream_id == sid:
            h = dict(e.headers)
            if "grpc-status" in h:
                return int(h["grpc-status"]), h.get("grpc-message", "")
    return None


def test_max_connections_refuses_extra_connections_at_accept():
    p = start_epp([18001], extra_args=["--max-connections=20"])
    try:
        held = [H2Client(p.grpc_port) for _ in range(20)]
        for c in held:
            c.pump(0.05)
        deadline = time.time() + 5   # a busy machine may not have accepted the last ones yet
        while time.time() < deadline and metric(p.metrics_port, "epp_extproc_connections") < 20:
            time.sleep(0.05)
        assert metric(p.metrics_port, "epp_extproc_connections") == 20
        extra = socket.create_connection(("127.0.0.1", p.grpc_port), timeout=5)
        assert wait_closed(extra, 2), "21st connection was not closed"
        extra.close()
        assert limit_hits(p, "max_connections") >= 1
        # open connections keep working
        held[0].conn.ping(b"held-ok!")
        held[0].flush()
        assert held[0].wait(lambda e: isinstance(e, h2.events.PingAckReceived))
        # freeing slots lets new clients in
        for c in held[:5]:
            c.close()
        deadline = time.time() + 5
        while time.time() < deadline and metric(p.metrics_port, "epp_extproc_connections") > 15:
            time.sleep(0.05)
        assert served_by_another_connection(p.grpc_port)
        for c in held[5:]:
            c.close()
    finally:
        assert p.stop() == 0, p.output()


def test_out_of_file_descriptors_pauses_accept_without_spinning():
    p = start_epp([18001])
    held = []
    try:
        pid = p.proc.pid
        in_use = len(os.listdir(f"/proc/{pid}/fd"))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 8, in_use + 8))
        # 8 connections use up the descriptors; the rest wait in the backlog, where accept fails with EMFILE
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", p.grpc_port), timeout=5)
            held.append(s)
        time.sleep(0.5)
        before = cpu_seconds(pid)
        time.sleep(2)
        used = cpu_seconds(pid) - before
        print(f"\nFIGURES emfile: cpu={used:.2f}s over 2 s while out of file descriptors")
        assert used < 0.3, f"epp used {used:.2f} s CPU in 2 s while out of file descriptors (accept spin)"
        for s in held:
            s.close()
        held.clear()
        # descriptors freed: new clients are served again (the listener resumed after its backoff)
        deadline = time.time() + 10
        while True:
            try:
                served_by_another_connection(p.grpc_port)
                break
            except grpc.RpcError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        assert metric(p.metrics_port, "epp_accept_paused_total") >= 1
        assert "EMFILE" in p.output(), p.output()
        assert p.output().count("EMFILE") <= 2, "pause log line not rate-limited:\n" + p.output()
    finally:
        for s in held:
            s.close()
        assert p.stop() == 0, p.output()


@pytest.mark.parametrize("flag,extra,expect", [
    ("--max-header-count=20", [(f"x-h{i}", "v") for i in range(20)], "more than 20 header fields"),
    ("--max-header-list-bytes=4096", [("x-big", "v" * 5000)], "larger than 4096 bytes"),
])
def test_request_header_limits_end_only_that_stream(flag, extra, expect):
    p = start_epp([18001], extra_args=[flag])
    try:
        c = H2Client(p.grpc_port)
        c.pump()
        bad = c.conn.get_next_available_stream_id()
        c.conn.send_headers(bad, grpc_headers(p.grpc_port, extra=extra))
        c.flush()
        c.wait(lambda e: grpc_status([e], bad) is not None)
        code, message = grpc_status(c.events, bad)
        assert code == 8, (code, message)   # RESOURCE_EXHAUSTED
        assert expect in message, message
        # the same connection serves the next stream
        good = c.conn.get_next_available_stream_id()
        c.conn.send_headers(good, grpc_headers(p.grpc_port))
        c.conn.send_data(good, grpc_frame(headers_request()) + grpc_frame(body_request(b'{"model":"m","prompt":"x"}', True)))
        c.flush()
        got = c.wait(lambda e: isinstance(e, h2.events.DataReceived) and e.stream_id == good)
        assert got, c.events
        assert limit_hits(p, "header_list") == 1
        c.close()
    finally:
        assert p.stop() == 0, p.output()


def test_max_concurrent_streams_refuses_streams_beyond_it():
    p = start_epp([18001], extra_args=["--max-concurrent-streams=4"])
    try:
        c = H2Client(p.grpc_port)
        c.pump()
        # h2 honours the peer's SETTINGS; lift its own guard to behave like a hostile client
        import collections
        c.conn.remote_settings._settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = collections.deque([100])
        sids = []
        for _ in range(8):
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, grpc_headers(p.grpc_port))
            c.conn.send_data(sid, grpc_frame(headers_request()))   # open, waiting for a body
            sids.append(sid)
        c.flush()
        c.wait(lambda e: isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated)), timeout=3)
        time.sleep(0.2)
        c.pump()
        refused = [e.stream_id for e in c.events if isinstance(e, h2.events.StreamReset)
                   and e.error_code == h2.errors.ErrorCodes.REFUSED_STREAM]
        goaway = c.goaway()
        # nghttp2: REFUSED_STREAM while our SETTINGS are unacknowledged, a connection error once they are (h2 ACKs
        # at once), never a fifth stream served
        if goaway:
            assert goaway[0].error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR, goaway
            assert goaway[0].last_stream_id <= sids[3], goaway
            assert limit_hits(p, "http2_protocol_error") == 1
        else:
            assert sorted(refused) == sids[4:], c.events
        assert served_by_another_connection(p.grpc_port)
        c.close()
    finally:
        assert p.stop() == 0, p.output()


def test_messages_per_stream_limit():
    p = start_epp([18001], extra_args=["--max-messages-per-stream=5"])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            s = Stream(ch)
            s.send(headers_msg())
            for _ in range(5):
                s.send(body_msg(b'{"model":"m",', False))
            with pytest.raises(grpc.RpcError) as e:
                s.recv()
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "more than 5 messages on one stream" in e.value.details()
        assert limit_hits(p, "messages_per_stream") == 1
        assert served_by_another_connection(p.grpc_port)   # 2 messages: fine
    finally:
        assert p.stop() == 0, p.output()


def test_json_depth_flag():
    p = start_epp([18001], extra_args=["--max-json-depth=8"])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}") as ch:
            for depth, ok in [(8, True), (9, False)]:
                body = b'{"model":"m","prompt":"p","x":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
                s = Stream(ch)
                s.send(headers_msg())
                s.send(body_msg(body, True))
                r = s.recv()
                s.close()
                if ok:
                    assert r.WhichOneof("response") == "request_headers", r
                else:
                    assert r.immediate_response.status.code == 400, r
                    assert b"exceeded max nesting depth 8" in r.immediate_response.body, r
    finally:
        assert p.stop() == 0, p.output()


@pytest.mark.parametrize("flag,message", [
    ("--max-header-count=0", "--max-header-count must be 8..100000"),
    ("--max-header-list-bytes=10", "--max-header-list-bytes must be 1024..16777216"),
    ("--max-concurrent-streams=0", "--max-concurrent-streams must be 1..100000"),
    ("--max-connections=0", "--max-connections must be ≥ 1"),
    ("--max-messages-per-stream=0", "--max-messages-per-stream must be ≥ 1"),
    ("--max-json-depth=1000", "--max-json-depth must be 1..512"),
    ("--max-prefix-hash-bytes=-1", "--max-prefix-hash-bytes must be ≥ 0"),
    ("--handshake-timeout=0", "--handshake-timeout must be > 0"),
    ("--max-early-resets=-5", "--max-early-resets must be ≥ 0"),
    ("--max-queued-output-bytes=1000", "--max-queued-output-bytes must be ≥ 1048576"),
])
def test_bad_limit_flags_exit_2(flag, message):
    r = subprocess.run([EPP_BIN, flag, f"--grpc-port={free_port()}", "--secure-serving=false"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r
    assert r.stderr.startswith("epp: error:") and message in r.stderr, r.stderr
