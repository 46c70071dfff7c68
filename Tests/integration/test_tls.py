"""TLS on the ext_proc port with real certificates made by the openssl CLI: certificate rotation under a live
connection (--enable-cert-reload), mTLS (--client-ca), and clear exit-2 errors for bad certificate files."""
import os
import socket
import ssl
import struct
import subprocess
import tempfile
import time

import grpc
import pytest

from harness import EPP_BIN, free_port, proto_modules, start_epp

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def run(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class PKI:
    """A throwaway CA (and a second, untrusted one) that issues server and client certificates."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="epp-pki-")
        for name in ("ca", "rogue-ca"):
            run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={name}", "-days", "2", cwd=self.dir)
        self.ca = self.path("ca.crt")

    def path(self, name):
        return os.path.join(self.dir, name)

    def issue(self, out_dir, cn, serial, client=False, ca="ca"):
        """Writes tls.crt/tls.key (server: SAN localhost + 127.0.0.1) signed by `ca` into out_dir."""
        os.makedirs(out_dir, exist_ok=True)
        ext = os.path.join(out_dir, "ext.cnf")
        with open(ext, "w") as f:
            if client:
                f.write("extendedKeyUsage=clientAuth\n")
            else:
                f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "tls.key", "-out", "tls.csr", "-subj", f"/CN={cn}", cwd=out_dir)
        run("openssl", "x509", "-req", "-in", "tls.csr", "-CA", self.path(f"{ca}.crt"), "-CAkey", self.path(f"{ca}.key"),
            "-set_serial", str(serial), "-days", "2", "-out", "tls.crt", "-extfile", "ext.cnf", cwd=out_dir)
        return out_dir


@pytest.fixture(scope="module")
def pki():
    return PKI()


def k8s_secret_dir(pki, cn, serial):
    """A directory laid out like a mounted Kubernetes Secret: tls.crt -> ..data/tls.crt, ..data -> version dir."""
    root = tempfile.mkdtemp(prefix="epp-secret-")
    pki.issue(os.path.join(root, "..v1"), cn, serial)
    os.symlink("..v1", os.path.join(root, "..data"))
    for f in ("tls.crt", "tls.key"):
        os.symlink(os.path.join("..data", f), os.path.join(root, f))
    return root


def k8s_rotate(pki, root, version, cn, serial):
    """What the kubelet does on a Secret update: new version dir, then an atomic rename of the ..data symlink."""
    pki.issue(os.path.join(root, f"..v{version}"), cn, serial)
    tmp = os.path.join(root, "..data_tmp")
    os.symlink(f"..v{version}", tmp)
    os.rename(tmp, os.path.join(root, "..data"))


def client_context(pki, cert_dir=None):
    ctx = ssl.create_default_context(cafile=pki.ca)
    ctx.set_alpn_protocols(["h2"])
    if cert_dir:
        ctx.load_cert_chain(os.path.join(cert_dir, "tls.crt"), os.path.join(cert_dir, "tls.key"))
    return ctx


def connect(port, ctx):
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    assert s.selected_alpn_protocol() == "h2"
    return s


def read_frame(s):
    head = b""
    while len(head) < 9:
        chunk = s.recv(9 - len(head))
        if not chunk:
            raise ConnectionError("connection closed")
        head += chunk
    length = int.from_bytes(head[:3], "big")
    payload = b""
    while len(payload) < length:
        chunk = s.recv(length - len(payload))
        if not chunk:
            raise ConnectionError("connection closed")
        payload += chunk
    return head[3], head[4], payload


def h2_open(s):
    """Client preface + empty SETTINGS; returns once the server's SETTINGS arrived."""
    s.sendall(H2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    while True:
        ftype, flags, _ = read_frame(s)
        if ftype == 4 and not flags & 1:
            s.sendall(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")   # SETTINGS ACK
            return


def h2_ping(s, data):
    """PING on the open connection; the server must answer with an ACK carrying the same 8 bytes."""
    s.sendall(b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + data)
    while True:
        ftype, flags, payload = read_frame(s)
        if ftype == 6 and flags & 1:
            return payload


def serial_of(s):
    return int(s.getpeercert()["serialNumber"], 16)


def subject_cn(s):
    return dict(x[0] for x in s.getpeercert()["subject"])["commonName"]


def health_check(port, pki, client_dir=None):
    _, hp = proto_modules()
    key = chain = None
    if client_dir:
        key = open(os.path.join(client_dir, "tls.key"), "rb").read()
        chain = open(os.path.join(client_dir, "tls.crt"), "rb").read()
    creds = grpc.ssl_channel_credentials(root_certificates=open(pki.ca, "rb").read(), private_key=key, certificate_chain=chain)
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=hp.HealthCheckRequest.SerializeToString,
                               response_deserializer=hp.HealthCheckResponse.FromString)
        return check(hp.HealthCheckRequest(service=""), timeout=5).status


def wait_for_serial(port, ctx, serial, timeout=10):
    deadline = time.time() + timeout
    seen = None
    while time.time() < deadline:
        with connect(port, ctx) as s:
            seen = serial_of(s)
        if seen == serial:
            return
        time.sleep(0.1)
    raise AssertionError(f"new connections still see serial {seen:#x}, wanted {serial:#x}")


def metric(p, name):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                if line.split(" ")[0] == name:
                    return float(line.split(" ")[1])
    return None


def test_rotation_keeps_live_connection_and_new_handshakes_get_new_cert(pki):
    cert_dir = k8s_secret_dir(pki, "epp-one", 0x1001)
    p = start_epp([18001], secure=True, workers=2, extra_args=[f"--cert-path={cert_dir}", "--enable-cert-reload"])
    try:
        ctx = client_context(pki)
        old = connect(p.grpc_port, ctx)
        h2_open(old)
        assert (serial_of(old), subject_cn(old)) == (0x1001, "epp-one")
        assert h2_ping(old, b"before!!") == b"before!!"

        k8s_rotate(pki, cert_dir, 2, "epp-two", 0x2002)
        wait_for_serial(p.grpc_port, ctx, 0x2002)
        with connect(p.grpc_port, ctx) as s:
            assert subject_cn(s) == "epp-two"
        # Several new handshakes: every loop (2 workers, SO_REUSEPORT) must have switched.
        for _ in range(8):
            with connect(p.grpc_port, ctx) as s:
                assert serial_of(s) == 0x2002
        assert health_check(p.grpc_port, pki) == 1   # SERVING over a fresh TLS channel

        # The connection made before the rotation is still the same, working HTTP/2 session.
        assert h2_ping(old, b"after!!!") == b"after!!!"
        assert serial_of(old) == 0x1001
        old.close()
        assert p.proc.poll() is None
        assert "TLS certificate reloaded" in p.output()
    finally:
        p.stop()


def test_broken_rotation_keeps_old_cert_then_recovers(pki):
    cert_dir = pki.issue(tempfile.mkdtemp(prefix="epp-certs-"), "epp-a", 0xA1)
    p = start_epp([18001], secure=True, extra_args=[f"--cert-path={cert_dir}", "--enable-cert-reload"])
    try:
        ctx = client_context(pki)
        with connect(p.grpc_port, ctx) as s:
            assert serial_of(s) == 0xA1
        # A truncated certificate: the reload fails, the process keeps serving the old certificate.
        with open(os.path.join(cert_dir, "tls.crt"), "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64\n")
        deadline = time.time() + 10
        while time.time() < deadline and "TLS certificate reload failed" not in p.output():
            time.sleep(0.1)
        assert "TLS certificate reload failed" in p.output(), p.output()
        assert (metric(p, 'epp_tls_certificate_reloads_total{result="error"}') or 0) >= 1
        with connect(p.grpc_port, ctx) as s:
            assert serial_of(s) == 0xA1
        assert p.proc.poll() is None

        # In-place rewrite of both files (certificate first, key later: a mismatched moment), then recovery.
        fresh = pki.issue(tempfile.mkdtemp(prefix="epp-certs-"), "epp-b", 0xB2)
        for name in ("tls.crt", "tls.key"):
            with open(os.path.join(fresh, name), "rb") as src, open(os.path.join(cert_dir, name), "wb") as dst:
                dst.write(src.read())
            time.sleep(0.3)
        wait_for_serial(p.grpc_port, ctx, 0xB2)
        assert (metric(p, 'epp_tls_certificate_reloads_total{result="success"}') or 0) >= 1
    finally:
        p.stop()


def test_sighup_reloads_certificate_without_watch_events(pki):
    cert_dir = pki.issue(tempfile.mkdtemp(prefix="epp-certs-"), "epp-c", 0xC1)
    p = start_epp([18001], secure=True, extra_args=[f"--cert-path={cert_dir}", "--enable-cert-reload"])
    try:
        ctx = client_context(pki)
        with connect(p.grpc_port, ctx) as s:
            assert serial_of(s) == 0xC1
        fresh = pki.issue(tempfile.mkdtemp(prefix="epp-certs-"), "epp-d", 0xD2)
        for name in ("tls.crt", "tls.key"):
            os.replace(os.path.join(fresh, name), os.path.join(cert_dir, name))
        p.proc.send_signal(1)
        wait_for_serial(p.grpc_port, ctx, 0xD2)
    finally:
        p.stop()


def test_without_reload_flag_certificate_is_not_replaced(pki):
    cert_dir = pki.issue(tempfile.mkdtemp(prefix="epp-certs-"), "epp-e", 0xE1)
    p = start_epp([18001], secure=True, extra_args=[f"--cert-path={cert_dir}"])
    try:
        fresh = pki.issue(tempfile.mkdtemp(prefix="epp-certs-"), "epp-f", 0xF2)
        for name in ("tls.crt", "tls.key"):
            os.replace(os.path.join(fresh, name), os.path.join(cert_dir, name))
        time.sleep(1.5)   # longer than the watcher's debounce + poll interval
        with connect(p.grpc_port, client_context(pki)) as s:
            assert serial_of(s) == 0xE1
    finally:
        p.stop()


def mtls_rejects(port, ctx):
    """True when the server refuses the client: at the handshake (TLS 1.2) or, with TLS 1.3, at the first read after
    the client's Finished (the server's certificate_required / unknown_ca alert arrives then)."""
    try:
        s = connect(port, ctx)
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        h2_open(s)
        return False
    except (ssl.SSLError, ConnectionError, socket.timeout):
        return True
    finally:
        s.close()


def test_mtls_requires_client_certificate_from_the_ca(pki):
    server_dir = pki.issue(tempfile.mkdtemp(prefix="epp-certs-"), "epp-mtls", 0x51)
    good = pki.issue(tempfile.mkdtemp(prefix="epp-client-"), "good-client", 0x61, client=True)
    rogue = pki.issue(tempfile.mkdtemp(prefix="epp-client-"), "rogue-client", 0x71, client=True, ca="rogue-ca")
    p = start_epp([18001], secure=True, extra_args=[f"--cert-path={server_dir}", f"--client-ca={pki.ca}"])
    try:
        # No client certificate.
        assert mtls_rejects(p.grpc_port, client_context(pki))
        # A certificate from another CA.
        assert mtls_rejects(p.grpc_port, client_context(pki, rogue))
        # TLS 1.2 as well: the refusal happens inside the handshake.
        ctx12 = client_context(pki)
        ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            connect(p.grpc_port, ctx12)
        # A certificate from the configured CA: HTTP/2 and gRPC work.
        with connect(p.grpc_port, client_context(pki, good)) as s:
            h2_open(s)
            assert h2_ping(s, b"mtls-ok!") == b"mtls-ok!"
        assert health_check(p.grpc_port, pki, good) == 1
        with pytest.raises(grpc.RpcError):
            health_check(p.grpc_port, pki, rogue)
        # The plain health port is unaffected (kubelet probes carry no client certificate).
        _, hp = proto_modules()
        with grpc.insecure_channel(f"127.0.0.1:{p.health_port}") as ch:
            check = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=hp.HealthCheckRequest.SerializeToString,
                                   response_deserializer=hp.HealthCheckResponse.FromString)
            assert check(hp.HealthCheckRequest(service="liveness"), timeout=5).status == 1   # SERVING
        assert p.proc.poll() is None
    finally:
        p.stop()


@pytest.mark.parametrize("case", ["missing-dir", "garbage-cert", "key-mismatch", "bad-client-ca", "reload-without-cert-path"])
def test_bad_certificate_input_exits_2_with_clear_error(pki, case):
    d = tempfile.mkdtemp(prefix="epp-bad-")
    args = [f"--cert-path={d}"]
    expect = ""
    if case == "missing-dir":
        args = [f"--cert-path={d}/nope"]
        expect = "cannot load certificate"
    elif case == "garbage-cert":
        pki.issue(d, "x", 1)
        with open(os.path.join(d, "tls.crt"), "w") as f:
            f.write("hello\n")
        expect = "cannot load certificate"
    elif case == "key-mismatch":
        pki.issue(d, "x", 1)
        other = pki.issue(tempfile.mkdtemp(prefix="epp-bad-"), "y", 2)
        os.replace(os.path.join(other, "tls.key"), os.path.join(d, "tls.key"))
        expect = "does not match"
    elif case == "bad-client-ca":
        pki.issue(d, "x", 1)
        bogus = os.path.join(d, "ca.pem")
        with open(bogus, "w") as f:
            f.write("not a certificate\n")
        args.append(f"--client-ca={bogus}")
        expect = "client CA"
    elif case == "reload-without-cert-path":
        args = ["--enable-cert-reload"]
        expect = "--enable-cert-reload needs --cert-path"
    r = subprocess.run([EPP_BIN, f"--grpc-port={free_port()}", f"--grpc-health-port={free_port()}",
                        f"--metrics-port={free_port()}", "--bind-address=127.0.0.1"] + args,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert expect in r.stderr, r.stderr
    assert r.stderr.startswith("epp: error:"), r.stderr
