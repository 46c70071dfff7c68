#!/usr/bin/env python3
"""Cross-check the hand-written EPPProtobuf codec against the real protobuf runtime.

The .proto subset in <repo>/proto is compiled with grpc_tools.protoc into a temporary
directory at run time (a FileDescriptorSet is loaded into a private descriptor pool,
so nothing clashes with installed packages such as `grpc`).

Commands
  gen-requests N SEED
      Prints N lines `hex<TAB>json`: random envoy.service.ext_proc.v3.ProcessingRequest
      messages serialized by real protobuf (sometimes split into per-field pieces,
      reordered, with unknown fields inserted at top level and inside the oneof
      payload), and a canonical JSON description of the fields the Swift decoder
      exposes, computed from real protobuf's parse of exactly those bytes.
  check-responses FILE
      Reads lines `hex<TAB>json` written by the Swift encoder (ProcessingResponse) and
      for each: parses with real protobuf, requires no unknown fields, compares the
      parsed message with the JSON description, and requires that real protobuf's
      deterministic re-serialization equals our bytes. Exits 1 with a diff on the
      first mismatches.
  check-health FILE
      Same for grpc.health.v1.HealthListResponse lines `hex<TAB>json`.

Canonical description (shared with Tests/EPPProtobufTests/CrossCheckSupport.swift):
  Value:   null | true/false | {"n": "<16 hex digits: big-endian IEEE-754 bits>"}
           | {"s": "<string>"} | {"o": {key: Value}} | [Value, ...]
  Struct:  {key: Value}
  JSON text for requests: json.dumps(sort_keys=True, separators=(',', ':'), ensure_ascii=True)
"""

import difflib
import json
import os
import random
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
PROTO_DIR = os.path.join(REPO, "proto")


def fail(msg, code=2):
    sys.stderr.write("proto_crosscheck: " + msg + "\n")
    sys.exit(code)


try:
    import grpc_tools
    from grpc_tools import protoc
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf import unknown_fields as pb_unknown_fields
except ImportError as e:  # pragma: no cover
    fail("missing python module (pip install protobuf grpcio-tools): %s" % e, 3)


# ---------------------------------------------------------------------------
# Compile proto/ at run time


def compile_protos():
    files = []
    for root, _dirs, names in os.walk(PROTO_DIR):
        for n in names:
            if n.endswith(".proto"):
                files.append(os.path.relpath(os.path.join(root, n), PROTO_DIR))
    files.sort()
    if not files:
        fail("no .proto files under " + PROTO_DIR)
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory(prefix="epp-proto-") as tmp:
        ds = os.path.join(tmp, "descriptors.pb")
        args = ["grpc_tools.protoc", "-I" + PROTO_DIR, "-I" + include,
                "--descriptor_set_out=" + ds, "--include_imports",
                "--python_out=" + tmp] + files
        # protoc resolves relative file names against the include paths.
        cwd = os.getcwd()
        os.chdir(PROTO_DIR)
        try:
            rc = protoc.main(args)
        finally:
            os.chdir(cwd)
        if rc != 0:
            fail("protoc failed (exit %d) compiling %s" % (rc, files))
        with open(ds, "rb") as f:
            fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return pool


POOL = compile_protos()


def cls(name):
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(name))


ProcessingRequest = cls("envoy.service.ext_proc.v3.ProcessingRequest")
ProcessingResponse = cls("envoy.service.ext_proc.v3.ProcessingResponse")
HealthListResponse = cls("grpc.health.v1.HealthListResponse")
HealthCheckRequest = cls("grpc.health.v1.HealthCheckRequest")

# ---------------------------------------------------------------------------
# Canonical descriptions


def d_double(x):
    return {"n": struct.pack(">d", x).hex()}


def d_value(v):
    kind = v.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "number_value":
        return d_double(v.number_value)
    if kind == "string_value":
        return {"s": v.string_value}
    if kind == "bool_value":
        return bool(v.bool_value)
    if kind == "struct_value":
        return {"o": d_struct(v.struct_value)}
    if kind == "list_value":
        return [d_value(x) for x in v.list_value.values]
    raise ValueError(kind)


def d_struct(s):
    return {k: d_value(v) for k, v in s.fields.items()}


def d_header_map(hm):
    out = []
    for h in hm.headers:
        value = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
        out.append([h.key, value])
    return out


PHASES = {
    None: "none",
    "request_headers": "requestHeaders",
    "response_headers": "responseHeaders",
    "request_body": "requestBody",
    "response_body": "responseBody",
    "request_trailers": "requestTrailers",
    "response_trailers": "responseTrailers",
}


def describe_request(m):
    which = m.WhichOneof("request")
    headers, eos, body = [], False, b""
    if which in ("request_headers", "response_headers"):
        hh = getattr(m, which)
        headers = d_header_map(hh.headers)
        eos = hh.end_of_stream
    elif which in ("request_body", "response_body"):
        b = getattr(m, which)
        body = b.body
        eos = b.end_of_stream
    elif which in ("request_trailers", "response_trailers"):
        headers = d_header_map(getattr(m, which).trailers)
    pc = None
    if m.HasField("protocol_config"):
        c = m.protocol_config
        pc = {"req": int(c.request_body_mode), "resp": int(c.response_body_mode),
              "noWait": bool(c.send_body_without_waiting_for_header_response)}
    return {
        "phase": PHASES[which],
        "headers": headers,
        "eos": bool(eos),
        "body": body.hex(),
        "metadata": {k: d_struct(v) for k, v in m.metadata_context.filter_metadata.items()},
        "attributes": {k: d_struct(v) for k, v in m.attributes.items()},
        "observability": bool(m.observability_mode),
        "protocolConfig": pc,
    }


def d_mutation(hm):
    sets = []
    for o in hm.set_headers:
        h = o.header
        if h.value:
            # We must never emit HeaderValue.value (rule 1): make it a mismatch.
            sets.append({"unexpected": "HeaderValue.value set: %r" % h.value})
            continue
        sets.append({
            "key": h.key,
            "rawValue": h.raw_value.decode("utf-8", "replace"),
            "append": bool(o.append.value) if o.HasField("append") else None,
        })
    return {"set": sets, "remove": list(hm.remove_headers)}


def d_common(c):
    return {
        "status": int(c.status),
        "headerMutation": d_mutation(c.header_mutation) if c.HasField("header_mutation") else None,
        "clearRouteCache": bool(c.clear_route_cache),
    }


def d_body_response(br):
    if not br.HasField("response"):
        return None
    c = br.response
    if c.status != 0 or c.HasField("header_mutation") or c.clear_route_cache or \
            not c.HasField("body_mutation") or \
            c.body_mutation.WhichOneof("mutation") != "streamed_response":
        return {"unexpected": str(br)}
    s = c.body_mutation.streamed_response
    return {"body": s.body.hex(), "eos": bool(s.end_of_stream)}


def describe_response(m):
    which = m.WhichOneof("response")
    d = {"kind": which, "common": None, "streamed": None, "mutation": None, "immediate": None}
    if which in ("request_headers", "response_headers"):
        hr = getattr(m, which)
        d["common"] = d_common(hr.response) if hr.HasField("response") else None
    elif which in ("request_body", "response_body"):
        d["streamed"] = d_body_response(getattr(m, which))
    elif which in ("request_trailers", "response_trailers"):
        tr = getattr(m, which)
        d["mutation"] = d_mutation(tr.header_mutation) if tr.HasField("header_mutation") else None
    elif which == "immediate_response":
        i = m.immediate_response
        d["immediate"] = {
            "status": int(i.status.code) if i.HasField("status") else None,
            "headers": d_mutation(i.headers) if i.HasField("headers") else None,
            "body": i.body.decode("utf-8", "replace"),
            "grpcStatus": int(i.grpc_status.status) if i.HasField("grpc_status") else None,
            "details": i.details,
        }
    d["dynamicMetadata"] = d_struct(m.dynamic_metadata) if m.HasField("dynamic_metadata") else None
    d["timeout"] = [int(m.override_message_timeout.seconds), int(m.override_message_timeout.nanos)] \
        if m.HasField("override_message_timeout") else None
    return d


def is_repeated(fd):
    if hasattr(fd, "is_repeated"):  # protobuf >= 6
        return fd.is_repeated
    return fd.label == fd.LABEL_REPEATED


def unknown_field_paths(m, path="$"):
    """Paths of (sub)messages carrying unknown fields."""
    out = []
    if len(pb_unknown_fields.UnknownFieldSet(m)) > 0:
        out.append(path)
    for fd, value in m.ListFields():
        if fd.message_type is None:
            continue
        name = path + "." + fd.name
        if fd.message_type.GetOptions().map_entry:
            if fd.message_type.fields_by_name["value"].message_type is not None:
                for k, v in value.items():
                    out += unknown_field_paths(v, "%s[%r]" % (name, k))
        elif is_repeated(fd):
            for i, v in enumerate(value):
                out += unknown_field_paths(v, "%s[%d]" % (name, i))
        else:
            out += unknown_field_paths(value, name)
    return out


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# ---------------------------------------------------------------------------
# Random ProcessingRequest generation

DOUBLES = [0.0, -0.0, 1.0, -1.0, 10.0, 200.0, 0.1, 1e300, -1e-300, 5e-324,
           2.0 ** 53, float("inf"), float("-inf"), 123456.789]
TEXT_POOL = ["", "a", "envoy.lb", "x-gateway-destination-endpoint", "10.0.0.1:8000",
             "héllo", "日本語", "emoji 😀", "quote\"back\\slash", "tab\tnl\nnul\x00",
             "\x7f\x1f", "/v1/completions", ":path", ":status", "200", "POST",
             "a" * 130, "ü" * 70]
HEADER_NAMES = [":path", ":method", ":authority", ":scheme", ":status", "content-type",
                "x-request-id", "x-gateway-inference-objective", "user-agent", "", "x-ü"]


def rand_text(rng):
    r = rng.random()
    if r < 0.5:
        return rng.choice(TEXT_POOL)
    if r < 0.8:
        n = rng.randint(0, 20)
        return "".join(chr(rng.randint(0x20, 0x7e)) for _ in range(n))
    n = rng.randint(0, 8)
    chars = []
    for _ in range(n):
        c = rng.choice([rng.randint(0, 0x7f), rng.randint(0x80, 0x7ff),
                        rng.randint(0x800, 0xd7ff), rng.randint(0xe000, 0xfffd),
                        rng.randint(0x10000, 0x10ffff)])
        chars.append(chr(c))
    return "".join(chars)


def rand_bytes(rng):
    r = rng.random()
    if r < 0.15:
        return b""
    if r < 0.55:
        return rand_text(rng).encode("utf-8")
    if r < 0.9:
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 40)))
    if r < 0.99:
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(120, 400)))
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(16000, 70000)))


def fill_value(v, rng, depth):
    kinds = ["null", "num", "str", "bool", "unset"]
    if depth < 5:
        kinds += ["struct", "list", "struct", "list"]
    k = rng.choice(kinds)
    if k == "null":
        v.null_value = 0
    elif k == "num":
        v.number_value = rng.choice(DOUBLES) if rng.random() < 0.5 else rng.uniform(-1e6, 1e6)
    elif k == "str":
        v.string_value = rand_text(rng)
    elif k == "bool":
        v.bool_value = rng.random() < 0.5
    elif k == "struct":
        v.struct_value.SetInParent()
        fill_struct(v.struct_value, rng, depth + 1)
    elif k == "list":
        v.list_value.SetInParent()
        for _ in range(rng.randint(0, 4)):
            fill_value(v.list_value.values.add(), rng, depth + 1)
    # "unset": Value with no kind (encoded as an empty Value message)


def fill_struct(s, rng, depth):
    for _ in range(rng.randint(0, 4)):
        fill_value(s.fields[rand_text(rng)], rng, depth)


def rand_raw_value(rng):
    # Mostly UTF-8 text; sometimes arbitrary bytes (invalid UTF-8 is repaired with U+FFFD
    # by both sides). Kept rare: under Swift Testing every stdlib UTF-8 repair throws
    # internally and captures a backtrace, which makes debug test runs slow.
    if rng.random() < 0.06:
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 12)))
    return rand_text(rng).encode("utf-8")


def fill_header_map(hm, rng):
    for _ in range(rng.randint(0, 6)):
        h = hm.headers.add()
        h.key = rng.choice(HEADER_NAMES) if rng.random() < 0.7 else rand_text(rng)
        mode = rng.random()
        if mode < 0.6:
            h.raw_value = rand_raw_value(rng)
        elif mode < 0.75:
            h.value = rand_text(rng)
        elif mode < 0.9:
            h.value = rand_text(rng)
            h.raw_value = rand_raw_value(rng)
        # else: neither


def gen_message(rng):
    m = ProcessingRequest()
    phase = rng.choice(["request_headers", "response_headers", "request_body", "response_body",
                        "request_trailers", "response_trailers", None if rng.random() < 0.3 else "request_body"])
    if phase in ("request_headers", "response_headers"):
        hh = getattr(m, phase)
        hh.SetInParent()
        fill_header_map(hh.headers, rng)
        hh.end_of_stream = rng.random() < 0.3
        if rng.random() < 0.1:
            fill_struct(hh.attributes["deprecated"], rng, 1)  # must be skipped
    elif phase in ("request_body", "response_body"):
        b = getattr(m, phase)
        b.SetInParent()
        b.body = rand_bytes(rng)
        b.end_of_stream = rng.random() < 0.4
        if rng.random() < 0.1:
            b.end_of_stream_without_message = True
            b.grpc_message_compressed = rng.random() < 0.5
            b.drain_complete = rng.random() < 0.5
    elif phase in ("request_trailers", "response_trailers"):
        t = getattr(m, phase)
        t.SetInParent()
        fill_header_map(t.trailers, rng)
    if rng.random() < 0.9:
        m.metadata_context.SetInParent()
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            ns = rng.choice(["envoy.lb", "envoy.lb.subset_hint", "x", ""]) if rng.random() < 0.7 else rand_text(rng)
            fill_struct(m.metadata_context.filter_metadata[ns], rng, 1)
        if rng.random() < 0.1:
            a = m.metadata_context.typed_filter_metadata["typed"]
            a.type_url = "type.googleapis.com/google.protobuf.Struct"
            a.value = rand_bytes(rng)
    if rng.random() < 0.3:
        for _ in range(rng.randint(0, 2)):
            fill_struct(m.attributes[rng.choice(["envoy.filters.http.ext_proc", "other", ""])], rng, 1)
    if rng.random() < 0.15:
        m.observability_mode = True
    if rng.random() < 0.4:
        m.protocol_config.SetInParent()
        modes = [0, 1, 2, 3, 4, 4, 4, 5, 7, 100, -1]
        m.protocol_config.request_body_mode = rng.choice(modes)
        m.protocol_config.response_body_mode = rng.choice(modes)
        m.protocol_config.send_body_without_waiting_for_header_response = rng.random() < 0.3
    return m, phase


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tag(field, wt):
    return varint((field << 3) | wt)


def ld(field, payload):
    return tag(field, 2) + varint(len(payload)) + payload


def rand_unknown(rng, allow_top_level=True):
    """A random unknown field (wire types 0/1/2/5)."""
    if allow_top_level and rng.random() < 0.4:
        if rng.random() < 0.5:
            # flow_control_init (12): FlowControlInit{int64 fields 1-4}
            body = b"".join(tag(f, 0) + varint(rng.choice([0, 1, 65536, -1])) for f in range(1, 5))
            return ld(12, body)
        # client_window_update (13)
        return ld(13, tag(1, 0) + varint(rng.choice([1, 1 << 40, -5])))
    field = rng.choice([15, 16, 20, 99, 1000, 19999, (1 << 29) - 1])
    wt = rng.choice([0, 1, 2, 5])
    if wt == 0:
        return tag(field, 0) + varint(rng.choice([0, 1, 300, -1]))
    if wt == 1:
        return tag(field, 1) + bytes(rng.getrandbits(8) for _ in range(8))
    if wt == 5:
        return tag(field, 5) + bytes(rng.getrandbits(8) for _ in range(4))
    return ld(field, bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 5))))


ONEOF_FIELD = {"request_headers": 2, "response_headers": 3, "request_body": 4,
               "response_body": 5, "request_trailers": 6, "response_trailers": 7}


def only(m, field_name):
    """A ProcessingRequest with just one field of `m`."""
    p = ProcessingRequest()
    if m.DESCRIPTOR.fields_by_name[field_name].message_type is not None:
        getattr(p, field_name).CopyFrom(getattr(m, field_name))
    else:
        setattr(p, field_name, getattr(m, field_name))
    return p


def gen_wire(rng, m, phase):
    """Serialize `m`, sometimes split into reordered pieces and with unknown fields."""
    if rng.random() < 0.5:
        data = m.SerializeToString()
        if rng.random() < 0.2:
            data += rand_unknown(rng)
        return data
    pieces = []
    for fd, _v in m.ListFields():
        name = fd.name
        if name in ONEOF_FIELD:
            sub = getattr(m, name)
            if name.endswith("headers") and len(sub.headers.headers) >= 2 and rng.random() < 0.5:
                # Split the header list into two messages for the same oneof member (merge).
                cut = rng.randint(1, len(sub.headers.headers) - 1)
                first, second = type(sub)(), type(sub)()
                first.CopyFrom(sub)
                second.CopyFrom(sub)
                del first.headers.headers[cut:]
                del second.headers.headers[:cut]
                pieces.append(ld(ONEOF_FIELD[name], first.SerializeToString()))
                pieces.append(ld(ONEOF_FIELD[name], second.SerializeToString()))
                continue
            payload = sub.SerializeToString()
            if rng.random() < 0.4:
                payload = rand_unknown(rng, False) + payload + rand_unknown(rng, False)
            pieces.append(ld(ONEOF_FIELD[name], payload))
        elif name == "attributes":
            for k in m.attributes:
                p = ProcessingRequest()
                p.attributes[k].CopyFrom(m.attributes[k])
                pieces.append(p.SerializeToString())
        else:
            pieces.append(only(m, name).SerializeToString())
    rng.shuffle(pieces)
    for _ in range(rng.randint(0, 3)):
        pieces.insert(rng.randint(0, len(pieces)), rand_unknown(rng))
    if rng.random() < 0.1 and phase is not None:
        # A different oneof member earlier in the stream: the later one must win.
        other = rng.choice([f for f in ONEOF_FIELD.values() if f != ONEOF_FIELD[phase]])
        pieces.insert(0, ld(other, b""))
    return b"".join(pieces)


def cmd_gen_requests(n, seed):
    rng = random.Random(seed)
    out = sys.stdout
    for _ in range(n):
        m, phase = gen_message(rng)
        data = gen_wire(rng, m, phase)
        parsed = ProcessingRequest.FromString(data)  # what real protobuf sees in these bytes
        out.write(data.hex() + "\t" + canonical(describe_request(parsed)) + "\n")


# ---------------------------------------------------------------------------
# Checking our encodings


def check_lines(path, message_cls, describe, label):
    failures = 0
    count = 0
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            count += 1
            hex_part, _, json_part = line.partition("\t")
            ours = bytes.fromhex(hex_part)
            expected = json.loads(json_part)
            problems = []
            try:
                m = message_cls.FromString(ours)
            except Exception as e:  # noqa: BLE001
                problems.append("real protobuf failed to parse our bytes: %s" % e)
                m = None
            if m is not None:
                unknown = unknown_field_paths(m)
                if unknown:
                    problems.append("unknown fields in: " + ", ".join(unknown))
                actual = describe(m)
                if actual != expected:
                    a = json.dumps(actual, sort_keys=True, indent=1, ensure_ascii=False).splitlines()
                    e = json.dumps(expected, sort_keys=True, indent=1, ensure_ascii=False).splitlines()
                    diff = "\n".join(difflib.unified_diff(e, a, "swift-model", "protobuf-parsed", lineterm=""))
                    problems.append("description mismatch:\n" + diff)
                theirs = m.SerializeToString(deterministic=True)
                if theirs != ours:
                    problems.append("bytes differ from real protobuf's deterministic serialization:\n"
                                    "  ours:     %s\n  protobuf: %s" % (ours.hex(), theirs.hex()))
            if problems:
                failures += 1
                if failures <= 5:
                    sys.stdout.write("%s line %d (%s):\n  %s\n" % (label, lineno, hex_part[:200],
                                                                "\n  ".join(problems)))
    if count == 0:
        sys.stdout.write("%s: no input lines\n" % label)
        return 1
    if failures:
        sys.stdout.write("%s: %d of %d messages FAILED\n" % (label, failures, count))
        return 1
    sys.stdout.write("%s: %d messages OK\n" % (label, count))
    return 0


def describe_health_list(m):
    return {k: int(v.status) for k, v in m.statuses.items()}


def main(argv):
    if len(argv) >= 2 and argv[1] == "gen-requests" and len(argv) == 4:
        cmd_gen_requests(int(argv[2]), int(argv[3]))
        return 0
    if len(argv) == 3 and argv[1] == "check-responses":
        return check_lines(argv[2], ProcessingResponse, describe_response, "ProcessingResponse")
    if len(argv) == 3 and argv[1] == "check-health":
        return check_lines(argv[2], HealthListResponse, describe_health_list, "HealthListResponse")
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
