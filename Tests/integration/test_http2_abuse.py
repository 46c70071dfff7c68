"""Hostile HTTP/2 clients against a real epp: rapid reset, SETTINGS / PING / CONTINUATION floods, zero-window
stalls, slowloris on the TLS handshake and on the h2c preface. Each attack must end the attacker's connection (or
leave it harmless), keep the process up with bounded RSS and CPU, and leave other connections served. Every test
prints a `FIGURES` line (RSS before/peak/after, CPU seconds); RELIABILITY.md "HTTP/2 abuse" records them."""
import socket
import ssl
import time

import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import pytest

from harness import RecordingBackend, start_envoy, start_epp
from hostile import (PREFACE, Figures, H2Client, body_request, frame, grpc_frame, grpc_headers, headers_request,
                     limit_hits, raw_h2c, served_by_another_connection, wait_closed)
import struct

ENHANCE_YOUR_CALM = 11


@pytest.fixture
def epp():
    p = start_epp([18001, 18002])
    yield p
    assert p.stop() == 0, p.output()


def rapid_reset_connection(port, fig, limit=20000):
    """HEADERS + RST_STREAM(CANCEL) on new streams, 200 per write, until the server ends the connection."""
    c = H2Client(port)
    c.pump()
    hdrs = grpc_headers(port)
    sent = 0
    try:
        while sent < limit and not c.closed:
            for _ in range(200):
                sid = c.conn.get_next_available_stream_id()
                c.conn.send_headers(sid, hdrs)
                c.conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
                sent += 1
            c.flush()
            c.pump(0.001)
            fig.sample()
    except (BrokenPipeError, ConnectionResetError, h2.exceptions.ProtocolError):
        pass
    c.wait(lambda e: isinstance(e, h2.events.ConnectionTerminated), timeout=5)
    c.close()
    return sent, c.goaway()


def test_rapid_reset_gets_goaway_and_costs_little(epp):
    fig = Figures(epp.proc.pid, "rapid_reset")
    total = 0
    for round_ in range(5):   # the attacker reconnects: every connection is cut off at the budget
        sent, goaway = rapid_reset_connection(epp.grpc_port, fig)
        total += sent
        assert goaway and goaway[0].error_code == ENHANCE_YOUR_CALM, (round_, sent, goaway)
        assert sent < 5000, sent   # budget 1000 (+ what was in flight when the GOAWAY arrived)
        if round_ == 0:
            assert served_by_another_connection(epp.grpc_port)
    fig.done()
    print(f"FIGURES rapid_reset: {total} streams reset over 5 connections")
    assert served_by_another_connection(epp.grpc_port)
    assert limit_hits(epp, "rapid_reset") == 5
    assert fig.rss_peak - fig.rss_before < 50, fig.rss_peak
    assert fig.cpu < 5, fig.cpu
    assert epp.proc.poll() is None


def test_resets_after_a_request_message_are_free():
    """Envoy's pattern: each stream sends its request_headers message, then RST_STREAM. Even with a budget of 10
    early resets, 3000 such streams on one connection never trip the rapid-reset defence."""
    p = start_epp([18001], extra_args=["--max-early-resets=10"])
    try:
        c = H2Client(p.grpc_port)
        c.pump()
        msg = grpc_frame(headers_request())
        for i in range(3000):
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, grpc_headers(p.grpc_port))
            c.conn.send_data(sid, msg)
            c.conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
            if i % 100 == 99:
                c.flush()
                c.pump(0.01)   # WINDOW_UPDATEs
        c.flush()
        c.conn.ping(b"stillok!")
        c.flush()
        pongs = c.wait(lambda e: isinstance(e, h2.events.PingAckReceived), timeout=5)
        assert pongs and pongs[0].ping_data == b"stillok!"
        assert not c.goaway() and not c.closed
        assert limit_hits(p, "rapid_reset") == 0
        c.close()
    finally:
        assert p.stop() == 0, p.output()


def test_envoy_traffic_is_not_mistaken_for_rapid_reset():
    """A real Envoy 1.40 ends every ext_proc stream with RST_STREAM: 300 requests (30 at a time) through it with an
    early-reset budget of 10 all succeed, and the defence never fires."""
    backends = [RecordingBackend() for _ in range(2)]
    p = start_epp([b.port for b in backends], extra_args=["--max-early-resets=10"])
    envoy = start_envoy(p.grpc_port)
    try:
        import concurrent.futures
        import http.client

        def one(i):
            c = http.client.HTTPConnection("127.0.0.1", envoy.listener_port, timeout=30)
            c.request("POST", "/v1/completions", body=b'{"model":"m","prompt":"hello %d"}' % i,
                      headers={"content-type": "application/json"})
            r = c.getresponse()
            r.read()
            c.close()
            return r.status

        with concurrent.futures.ThreadPoolExecutor(30) as ex:
            statuses = list(ex.map(one, range(300)))
        assert statuses.count(200) == 300, statuses
        assert limit_hits(p, "rapid_reset") == 0
        assert limit_hits(p, "http2_protocol_error") == 0
    finally:
        envoy.stop()
        assert p.stop() == 0, p.output()
        for b in backends:
            b.stop()


@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_control_frame_flood_from_a_peer_that_does_not_read(epp, kind):
    """Every SETTINGS and PING needs an ACK; a peer that floods them and never reads is cut off by nghttp2's
    outbound-ACK limit (1000) instead of growing our output queue."""
    fig = Figures(epp.proc.pid, f"{kind}_flood")
    s = raw_h2c(epp.grpc_port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    one = frame(4, 0, 0, b"\x00\x03\x00\x00\x00\x64") if kind == "settings" else frame(6, 0, 0, b"pingpong")
    sent = 0
    try:
        for _ in range(200):
            s.sendall(one * 1000)
            sent += 1000
            fig.sample()
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    assert wait_closed(s, 5), "flooding connection still open"
    s.close()
    fig.done()
    print(f"FIGURES {kind}_flood: {sent} frames sent before the server closed")
    assert sent < 200_000
    assert limit_hits(epp, "http2_protocol_error") >= 1
    assert served_by_another_connection(epp.grpc_port)
    assert fig.rss_peak - fig.rss_before < 50
    assert fig.cpu < 5


def test_continuation_flood_is_cut_off(epp):
    s = raw_h2c(epp.grpc_port)
    field = b"\x00\x03x-a\x01b"   # literal header field, not indexed
    attack = frame(1, 0, 1, field)   # HEADERS without END_HEADERS
    attack += b"".join(frame(9, 0, 1, field) for _ in range(1000))   # CONTINUATION, never END_HEADERS
    try:
        s.sendall(attack)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert wait_closed(s, 5)
    s.close()
    assert served_by_another_connection(epp.grpc_port)
    assert epp.proc.poll() is None


def send_message(c, sid, msg, end_stream=False):
    """One gRPC message on `sid`, respecting the server's flow-control windows (pumping for WINDOW_UPDATE)."""
    data = grpc_frame(msg)
    while data:
        window = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
        if window <= 0:
            if not c.pump(0.05) and c.closed:
                return False
            continue
        chunk, data = data[:window], data[window:]
        c.conn.send_data(sid, chunk, end_stream=end_stream and not data)
        c.flush()
    return True


def test_zero_window_stall_cannot_grow_memory():
    """The client advertises a zero receive window, then makes the picker echo large bodies: the responses can
    never leave, so they queue. Past --max-queued-output-bytes the connection is closed."""
    p = start_epp([18001], extra_args=["--max-queued-output-bytes=8388608"])
    try:
        fig = Figures(p.proc.pid, "zero_window")
        c = H2Client(p.grpc_port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        c.pump()
        body = b'{"model":"m","prompt":"' + b"x" * (3 << 20) + b'"}'
        chunk = 1 << 20
        try:
            for _ in range(8):   # 8 requests × 3 MiB echoed = 24 MiB > 8 MiB cap
                sid = c.conn.get_next_available_stream_id()
                c.conn.send_headers(sid, grpc_headers(p.grpc_port))
                c.flush()
                if not send_message(c, sid, headers_request()):
                    break
                for off in range(0, len(body), chunk):
                    part = body[off:off + chunk]
                    if not send_message(c, sid, body_request(part, off + chunk >= len(body))):
                        break
                fig.sample()
                if c.closed:
                    break
        except (BrokenPipeError, ConnectionResetError, h2.exceptions.ProtocolError):
            pass
        c.wait(lambda e: isinstance(e, h2.events.ConnectionTerminated), timeout=5)
        assert c.closed or c.goaway(), "stalled connection still open"
        c.close()
        fig.done()
        assert limit_hits(p, "output_stalled") == 1
        assert served_by_another_connection(p.grpc_port)
        assert fig.rss_peak - fig.rss_before < 120, fig.rss_peak
        assert p.proc.poll() is None
    finally:
        assert p.stop() == 0, p.output()


def stream_ended(c, sid):
    return any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in c.events)


def grpc_status_of(c, sid):
    for e in c.events:
        if isinstance(e, (h2.events.TrailersReceived, h2.events.ResponseReceived)) and e.stream_id == sid:
            h = dict(e.headers)
            if "grpc-status" in h:
                return int(h["grpc-status"]), h.get("grpc-message", "")
    return None


def test_unfinished_messages_on_many_streams_are_bounded_per_connection():
    """Many streams each send most of a large gRPC message and never finish it: without a per-connection budget
    each could hold up to --max-receive-message-bytes. With --max-connection-buffered-bytes=32 MiB the streams
    that would go over end with RESOURCE_EXHAUSTED, RSS stays near the budget, other connections are served."""
    budget = 32 << 20
    p = start_epp([18001], extra_args=[f"--max-connection-buffered-bytes={budget}"])
    try:
        fig = Figures(p.proc.pid, "buffered_input")
        c = H2Client(p.grpc_port)
        c.pump()
        streams, partial = 40, 3 << 20   # 40 × 3 MiB = 120 MiB offered, declared messages of 4,000,000 bytes
        prefix = b"\x00" + struct.pack(">I", 4_000_000)
        sids = []
        for _ in range(streams):
            sid = c.conn.get_next_available_stream_id()
            sids.append(sid)
            c.conn.send_headers(sid, grpc_headers(p.grpc_port))
            data = prefix + b"y" * partial
            while data and not stream_ended(c, sid):
                window = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
                if window <= 0:
                    assert c.pump(0.05) or not c.closed, "attack connection closed"
                    continue
                chunk, data = data[:window], data[window:]
                try:
                    c.conn.send_data(sid, chunk)
                except h2.exceptions.StreamClosedError:
                    break   # the server reset the stream it ended
                c.flush()
            c.pump(0.01)
            fig.sample()
        c.pump(0.5)
        fig.sample()
        statuses = [grpc_status_of(c, sid) for sid in sids]
        exhausted = [s for s in statuses if s and s[0] == 8]
        held = statuses.count(None)
        assert exhausted, statuses
        assert "--max-connection-buffered-bytes" in exhausted[0][1], exhausted[0]
        assert held * partial <= budget, (held, statuses)   # the streams still open fit in the budget
        assert held >= 8, held   # and the budget is used: ~10 streams of 3 MiB fit in 32 MiB
        assert limit_hits(p, "connection_buffered_bytes") == len(exhausted)
        assert served_by_another_connection(p.grpc_port)
        assert not c.closed   # only streams were ended, not the connection
        c.close()
        fig.done()
        assert fig.rss_peak - fig.rss_before < (budget >> 20) + 40, fig.rss_peak
        assert p.proc.poll() is None
    finally:
        assert p.stop() == 0, p.output()


def test_tls_handshake_slowloris_is_timed_out():
    """300 connections that never finish the TLS handshake (silent, or a record header and then nothing) are closed
    after --handshake-timeout; a real TLS client is served meanwhile."""
    p = start_epp([18001], secure=True, extra_args=["--handshake-timeout=1"])
    try:
        fig = Figures(p.proc.pid, "tls_slowloris")
        socks = []
        for i in range(300):
            s = socket.create_connection(("127.0.0.1", p.grpc_port), timeout=5)
            if i % 2:
                s.sendall(b"\x16\x03\x01\x02\x00\x01")   # a ClientHello record header and one byte of it
            socks.append(s)
        fig.sample()
        # meanwhile, an honest client completes TLS + HTTP/2 and gets a PING answered
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.grpc_port), timeout=5)) as t:
            import test_tls
            test_tls.h2_open(t)
            assert test_tls.h2_ping(t, b"honest!!") == b"honest!!"
        deadline = time.time() + 4
        still_open = [s for s in socks if not wait_closed(s, max(0.01, deadline - time.time()))]
        for s in socks:
            s.close()
        fig.done()
        assert not still_open, f"{len(still_open)} handshakes not timed out"
        assert limit_hits(p, "handshake_timeout") >= 300
        assert p.proc.poll() is None
    finally:
        assert p.stop() == 0, p.output()


def test_h2c_preface_slowloris_is_timed_out():
    p = start_epp([18001], extra_args=["--handshake-timeout=1"])
    try:
        socks = []
        for i in range(100):
            s = socket.create_connection(("127.0.0.1", p.grpc_port), timeout=5)
            s.sendall(PREFACE[: i % len(PREFACE)])   # part of the preface, then silence
            socks.append(s)
        t0 = time.time()
        assert served_by_another_connection(p.grpc_port)
        still_open = [s for s in socks if not wait_closed(s, max(0.01, t0 + 4 - time.time()))]
        for s in socks:
            s.close()
        assert not still_open, f"{len(still_open)} prefaces not timed out"
        assert limit_hits(p, "handshake_timeout") >= 100
        # a connection that completed its preface is not subject to the timeout
        c = H2Client(p.grpc_port)
        c.pump()
        time.sleep(1.5)
        c.conn.ping(b"idle-ok!")
        c.flush()
        assert c.wait(lambda e: isinstance(e, h2.events.PingAckReceived), timeout=5)
        c.close()
    finally:
        assert p.stop() == 0, p.output()
