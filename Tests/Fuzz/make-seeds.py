#!/usr/bin/env python3
"""Writes the hand-made seed inputs under corpus/ (spec vectors, golden-style
bodies, deploy examples). Re-run after changing a target's input layout."""
import os, re, textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..'))
SPEC = '/work/shared/spec/ext-proc.md'
C = os.path.join(HERE, 'corpus')


def put(target, name, data):
    os.makedirs(os.path.join(C, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(C, target, name), 'wb') as f:
        f.write(data)


# processing-request: the Envoy->us vectors of ext-proc.md §9, plus V9 with
# unknown fields appended (the spec asks decoders to cover that).
if os.path.exists(SPEC):
    spec = open(SPEC).read()
    for vid in ['V9', 'V10', 'V11', 'V12', 'V25', 'V26', 'V27']:
        m = re.search(r'^\| ' + vid + r' \|[^\n]*?\| `([0-9a-f]+)` \|', spec, re.M)
        put('processing-request', 'spec-' + vid.lower(), bytes.fromhex(m.group(1)))
    v9 = open(os.path.join(C, 'processing-request', 'spec-v9'), 'rb').read()
    put('processing-request', 'v9-unknown-fields', v9 + bytes.fromhex('62006a020801'))
put('processing-request', 'empty', b'')

# request-body: byte 0 = APIKind index, byte 1 = replacement model length, model, body.
kinds = ['completions', 'chat', 'responses', 'embeddings', 'conversations']
bodies = {
    0: [b'{"model":"m","prompt":"hello world"}',
        b'{"model":"food-review","prompt":["a","b\\u00e9"],"stream":true,"stream_options":{"include_usage":true},"max_tokens":16}',
        b'{"prompt":[1,2,3],"model":"m","cache_salt":"s"}'],
    1: [b'{"model":"m","messages":[{"role":"user","content":"hi"}]}',
        b'{"model":"m","messages":[{"role":"system","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"u"}}]}],"tools":[{"type":"function"}],"max_completion_tokens":5}'],
    2: [b'{"model":"m","input":"hi","instructions":"be nice","tools":[{"a":1.5e3}]}',
        b'{"model":"m","input":[{"role":"user","content":"x"}]}'],
    3: [b'{"model":"m","input":"text"}', b'{"model":"m","input":[[1,2],[3]]}'],
    4: [b'{"model":"m","items":[{"type":"message","role":"user","content":"hi"}]}'],
}
for k, bs in bodies.items():
    for i, b in enumerate(bs):
        put('request-body', f'{kinds[k]}-{i}', bytes([k, 3]) + b'new' + b)

# usage-scanner: byte 0 bit 0 = SSE, byte 1 = number of split choices, the
# choices, one byte whose bit 0 picks a 64-byte line cap, then the body.
sse = (b'data: {"id":"1","choices":[{"text":"a"}]}\n\n'
       b'data: {"id":"1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12,'
       b'"prompt_tokens_details":{"cached_tokens":3}}}\n\ndata: [DONE]\n\n')
resp = (b'event: response.completed\ndata: {"type":"response.completed","response":{"object":"response",'
        b'"usage":{"input_tokens":4,"output_tokens":2,"total_tokens":6}}}\n\n')
js = (b'{"id":"x","object":"chat.completion","choices":[{"message":{"content":"hi \\"usage\\""}}],'
      b'"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}')
put('usage-scanner', 'sse-chat', bytes([1, 3, 10, 40, 5, 0]) + sse)
put('usage-scanner', 'sse-responses', bytes([1, 2, 7, 30, 0]) + resp)
put('usage-scanner', 'json-chat', bytes([0, 2, 20, 3, 0]) + js)
put('usage-scanner', 'json-responses', bytes([0, 0, 0]) +
    b'{"object":"response","usage":{"input_tokens":1,"output_tokens":2,"total_tokens":3,"input_tokens_details":{"cached_tokens":1}}}')

# prometheus-text: vLLM-style exposition with escapes, +Inf, NaN, CRLF, timestamps.
put('prometheus-text', 'vllm', '''# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 3.0
vllm:num_requests_waiting{model_name="m"} 0
vllm:gpu_cache_usage_perc{model_name="m"} 0.25
vllm:kv_cache_usage_perc{model_name="m",engine="0"} 2.5e-01
vllm:lora_requests_info{max_lora="4",running_lora_adapters="a,b",waiting_lora_adapters=""} 1.7e+09
vllm:cache_config_info{block_size="16",num_gpu_blocks="1000"} 1
x_total{a="q\\"u\\\\o\\nte",} +Inf 1700000000000
nan_metric NaN\r
neg -Inf
''')
put('prometheus-text', 'empty', '')

# endpoints-file and picker-config: the deploy examples (ConfigMaps unwrapped).
put('endpoints-file', 'example', open(os.path.join(ROOT, 'deploy/examples/endpoints.yaml'), 'rb').read())
put('endpoints-file', 'json', '{"endpoints":[{"name":"a","address":"10.0.0.1","port":8000,"labels":{"role":"decode"}},'
    '{"name":"b","namespace":"ns","address":"10.0.0.2","port":8001}]}')
put('picker-config', 'prefix-heavy', open(os.path.join(ROOT, 'deploy/examples/prefix-heavy.yaml'), 'rb').read())
for path, name in [('deploy/kubernetes/base/epp-config.yaml', 'epp-config'),
                   ('deploy/kubernetes/overlays/demo/epp-config-pd.yaml', 'epp-config-pd')]:
    text = open(os.path.join(ROOT, path)).read()
    m = re.search(r'config\.yaml: \|\n((?:    .*\n|\s*\n)+)', text)
    put('picker-config', name, textwrap.dedent(m.group(1)))

# usage-expression: byte 0 = expression length, expression, usage JSON.
usage = b'{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":3}}'
exprs = [b'usage.prompt_tokens + usage.completion_tokens * 2',
         b'has(usage.prompt_tokens_details) ? usage.prompt_tokens_details.cached_tokens : 0',
         b'double(usage.total_tokens) / 3.0 >= 1.5 && !(usage.prompt_tokens == 4) || false',
         b'int("x") % 0', b'null != "s\\"q"']
for i, e in enumerate(exprs):
    put('usage-expression', f'expr-{i}', bytes([len(e)]) + e + usage)
# Regression: nesting past the limit (length byte 255 = the rest is the expression).
put('usage-expression', 'deep-parens', bytes([255]) + b'(' * 300 + b'1' + b')' * 300)
put('usage-expression', 'deep-not', bytes([255]) + b'!' * 300 + b'true')

# extproc-stream: byte 0 = body limit (64 + 16*b), byte 1 = chunk size - 1, then ops
# (op%8: 0 raw, 1 request_headers, 2 request_body, 3 request_trailers,
# 4 response_headers, 5 response_body, 6 response_trailers, 7 half-close).
def le16(n):
    return bytes([n & 0xff, n >> 8])
def body_op(op, eos, data):
    return bytes([op, 1 if eos else 0]) + le16(len(data)) + data
req = b'{"model":"m","prompt":"hello world, a prompt long enough to be re-chunked"}'
sse_resp = (b'data: {"choices":[{"text":"a"}]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":3,'
            b'"completion_tokens":1,"total_tokens":4}}\n\ndata: [DONE]\n\n')
put('extproc-stream', 'completion-sse',
    bytes([40, 15]) + bytes([1, 2, 0, 7]) + body_op(2, False, req[:20]) + body_op(2, True, req[20:])
    + bytes([4, 1, 0, 0]) + body_op(5, False, sse_resp[:40]) + body_op(5, False, sse_resp[40:]) + bytes([6, 7]))
chat = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}'
put('extproc-stream', 'chat-trailers',
    bytes([40, 200]) + bytes([1, 0, 1]) + body_op(2, False, chat) + bytes([3]) + bytes([4, 0, 0, 0])
    + body_op(5, True, b'{"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}'))
put('extproc-stream', 'header-only', bytes([0, 0]) + bytes([1, 1, 5]) + bytes([4, 0, 0, 1]) + bytes([7]))
put('extproc-stream', 'too-large', bytes([0, 0]) + bytes([1, 0, 0]) + body_op(2, True, b'x' * 100))
put('extproc-stream', 'raw-v9-v10', bytes([40, 10]) + bytes([0, 55]) + bytes.fromhex(
    '122d0a2b0a180a053a706174681a0f2f76312f636f6d706c6574696f6e730a0f0a073a6d6574686f641a04504f535442005a0408041004')
    + bytes([0, 19]) + bytes.fromhex('220f0a0d7b226d6f64656c223a226d227d4200'))

# grpc-framing: bytes 0-1 = max message size (LE), byte 2 = split-choice count,
# the choices, then the stream: V9 and V10 framed, back to back, split.
v9 = bytes.fromhex('122d0a2b0a180a053a706174681a0f2f76312f636f6d706c6574696f6e730a0f0a073a6d6574686f641a04504f535442005a0408041004')
v10 = bytes.fromhex('220f0a0d7b226d6f64656c223a226d227d4200')
framed = b''.join(b'\x00' + len(m).to_bytes(4, 'big') + m for m in [v9, v10, b''])
put('grpc-framing', 'two-messages-split', le16(1024) + bytes([3, 2, 60, 0]) + framed)
put('grpc-framing', 'compressed', le16(1024) + bytes([1, 3]) + b'\x01\x00\x00\x00\x02ab')
put('grpc-framing', 'too-large', le16(4) + bytes([0]) + b'\x00\x00\x00\x00\x05hello')

# http2-server: byte 0 bit 0 = prepend the client preface, byte 1 = split-choice
# count, the choices, then HTTP/2 frames (HPACK literals without indexing).
def frame(ftype, flags, stream, payload):
    return len(payload).to_bytes(3, 'big') + bytes([ftype, flags]) + stream.to_bytes(4, 'big') + payload
def hpack_literal(name, value):
    return bytes([0x00, len(name)]) + name + bytes([len(value)]) + value
def grpc(m):
    return b'\x00' + len(m).to_bytes(4, 'big') + m
headers = b''.join(hpack_literal(n, v) for n, v in [
    (b':method', b'POST'), (b':scheme', b'http'), (b':path', b'/envoy.service.ext_proc.v3.ExternalProcessor/Process'),
    (b':authority', b'epp'), (b'content-type', b'application/grpc'), (b'te', b'trailers')])
settings = frame(4, 0, 0, b'')
settings_ack = frame(4, 1, 0, b'')
prompt_body = b'{"model":"m","prompt":"hello"}'
body_eos = b'\x0a' + bytes([len(prompt_body)]) + prompt_body + b'\x10\x01'
v_body = b'\x22' + bytes([len(body_eos)]) + body_eos        # request_body{body, end_of_stream:true}
call = frame(1, 4, 1, headers) + frame(0, 0, 1, grpc(v9)) + frame(0, 0, 1, grpc(v_body)) + frame(0, 1, 1, b'')
put('http2-server', 'extproc-call', bytes([1, 2, 30, 100]) + settings + settings_ack + call)
put('http2-server', 'ping-goaway', bytes([1, 0]) + settings + frame(6, 0, 0, b'12345678') + frame(7, 0, 0, bytes(8)))
put('http2-server', 'rst-stream', bytes([1, 0]) + settings + frame(1, 4, 1, headers) + frame(3, 0, 1, bytes([0, 0, 0, 8])))
put('http2-server', 'no-preface', bytes([0, 0]) + b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')

# redis-reply: byte 0 = split-choice count, byte 1 = candidate mask, byte 2 = extra
# request blocks, the choices, then what a Redis server sends. Replies captured from
# redis-server 7.0.15 (MGET over the prefix index layout, the precise lookup script over
# llm-d-style hashes, errors, pipelined replies; the MGET values of the earlier 8-byte layout),
# MGET replies in the current 16-byte entry layout, then hand-made edge cases.
captured = [
    ('mget-old-8-byte-entries', b'*4\r\n$16\r\n\x11\x11\x11\x11\x11\x11\x11\x11""""""""\r\n$8\r\n\x11\x11\x11\x11\x11\x11\x11\x11\r\n$24\r\n\x01\x02\x03\x04\x05\x06\x07\x08\x11\x11\x11\x11\x11\x11\x11\x11""""""""\r\n$-1\r\n'),
    ('precise-lookup', b'*2\r\n*4\r\n$13\r\n10.0.0.2:8000\r\n$3\r\nGPU\r\n$13\r\n10.0.0.3:8000\r\n$3\r\ncpu\r\n*2\r\n$13\r\n10.0.0.2:8000\r\n$3\r\ngpu\r\n'),
    ('record-reply', b'*2\r\n:3\r\n:1\r\n'),
    ('noscript', b'-NOSCRIPT No matching script. Please use EVAL.\r\n'),
    ('unknown-command', b"-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n"),
    ('wrongtype', b'-WRONGTYPE Operation against a key holding the wrong kind of value\r\n'),
    ('integer', b':-42\r\n'),
    ('pong', b'+PONG\r\n'),
    ('ok', b'+OK\r\n'),
    ('smembers-empty', b'*0\r\n'),
    ('nested', b'*4\r\n:1\r\n*2\r\n$1\r\na\r\n*2\r\n$-1\r\n$1\r\nb\r\n+OK\r\n-E x\r\n'),
    ('pipelined', b'+PONG\r\n*2\r\n$8\r\n\x11\x11\x11\x11\x11\x11\x11\x11\r\n$-1\r\n:-41\r\n'
                  b'-NOSCRIPT No matching script. Please use EVAL.\r\n'),
]
info = ('# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\n'
        'redis_mode:standalone\r\nos:Linux x86_64\r\narch_bits:64\r\nmultiplexing_api:epoll\r\n'
        'process_id:2400\r\nrun_id:894d732a2eec6a6c47770f4023f0b34a1472d1a9\r\ntcp_port:6379\r\n'
        'uptime_in_seconds:7\r\nhz:10\r\nexecutable:/usr/bin/redis-server\r\nconfig_file:\r\n').encode()
captured.append(('info-server', b'$%d\r\n%s\r\n' % (len(info), info)))
# MGET in the current layout: a block value is 16-byte entries pod id || segment id (little endian).
def entry(pod, seg):
    return pod.to_bytes(8, 'little') + seg.to_bytes(8, 'little')
def mget(values):
    out = b'*%d\r\n' % len(values)
    for v in values:
        out += b'$-1\r\n' if v is None else b'$%d\r\n%s\r\n' % (len(v), v)
    return out
pa, pb, pc, s1, s2 = 0x1111111111111111, 0x2222222222222222, 0x0807060504030201, 0xAAAA, 0xBBBB
captured += [
    ('mget', mget([entry(pa, s1) + entry(pb, s1), entry(pa, s1), entry(pc, s2) + entry(pa, s2) + entry(pb, s1), None])),
    ('mget-nil-first', mget([None, entry(pa, s1) + entry(pb, s2)])),
    ('mget-two-segments', mget([entry(pa, s1), entry(pa, s1), entry(pa, s2), entry(pb, s2)])),
]
edge = [
    ('nil-array', b'*-1\r\n'),
    ('bulk-with-crlf', b'$8\r\na\r\nb\r\n\x00\xff\r\n'),
    ('status-invalid-utf8', b'+\xc3\x28 ok\r\n-ERR \xff\xfe\r\n'),
    ('too-deep', b'*1\r\n' * 9 + b':1\r\n'),            # hiredis 0.14 nests at most 7 levels
    ('bad-type-byte', b'+OK\r\n!oops\r\n'),
    ('bad-bulk-length', b'$-2\r\n'),
    ('integer-overflow', b':99999999999999999999\r\n'),
    ('partial', b'*3\r\n$16\r\n\x11\x11\x11\x11\x11\x11\x11\x11""""""""\r\n$100\r\nshort'),
    ('mget-ragged', b'*3\r\n$8\r\n\x00\x00\x00\x00\x00\x00\x00\x00\r\n$5\r\nabcde\r\n:7\r\n'),
    ('lookup-odd-pairs', b'*1\r\n*3\r\n$13\r\n10.0.0.2:8000\r\n$3\r\ngpu\r\n$1\r\nx\r\n'),
]
for i, (name, data) in enumerate(captured + edge):
    choices = bytes([3, 0, 17, 1, 60][:i % 6])
    put('redis-reply', name, bytes([len(choices), 0xff if i % 2 else 0x0f, i % 4]) + choices + data)
