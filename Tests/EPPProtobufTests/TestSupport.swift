import EPPProtobuf

// MARK: - Hex

private let hexValues: [UInt8] = {
    var t = [UInt8](repeating: 0xFF, count: 256)
    for (i, c) in "0123456789abcdef".utf8.enumerated() { t[Int(c)] = UInt8(i) }
    for (i, c) in "ABCDEF".utf8.enumerated() { t[Int(c)] = UInt8(10 + i) }
    return t
}()

/// Hex to bytes (spaces ignored). Written with unsafe buffers so it stays fast in debug builds.
func hex(_ s: String) -> [UInt8] {
    var digits = Array(s.utf8)
    if digits.contains(UInt8(ascii: " ")) { digits.removeAll { $0 == UInt8(ascii: " ") } }
    precondition(digits.count % 2 == 0, "odd hex length")
    let n = digits.count / 2
    return [UInt8](unsafeUninitializedCapacity: n) { out, count in
        digits.withUnsafeBufferPointer { d in
            hexValues.withUnsafeBufferPointer { t in
                for i in 0..<n {
                    let hi = t[Int(d[2 * i])], lo = t[Int(d[2 * i + 1])]
                    precondition(hi != 0xFF && lo != 0xFF, "bad hex digit")
                    out[i] = hi << 4 | lo
                }
            }
        }
        count = n
    }
}

private let hexDigits = Array("0123456789abcdef".utf8)

func hexString<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    let input = Array(bytes)
    let out = [UInt8](unsafeUninitializedCapacity: input.count * 2) { out, count in
        input.withUnsafeBufferPointer { b in
            hexDigits.withUnsafeBufferPointer { h in
                for i in 0..<b.count {
                    out[2 * i] = h[Int(b[i] >> 4)]
                    out[2 * i + 1] = h[Int(b[i] & 15)]
                }
            }
        }
        count = input.count * 2
    }
    return String(decoding: out, as: UTF8.self)
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

func encode(_ r: ProcessingResponse) -> [UInt8] { r.encoded() }

// MARK: - Deterministic RNG

struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }
    mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &self) }
    mutating func pick<T>(_ xs: [T]) -> T { xs[Int.random(in: 0..<xs.count, using: &self)] }
}

// MARK: - Canonical JSON (matches Python json.dumps(sort_keys=True, separators=(',',':'), ensure_ascii=True))

indirect enum JSON {
    case null
    case bool(Bool)
    case int(Int64)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    var canonical: String {
        var out = [UInt8]()
        out.reserveCapacity(256)
        write(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private func write(into out: inout [UInt8]) {
        switch self {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .int(let i): out += Array(String(i).utf8)
        case .string(let s): JSON.writeString(s, into: &out)
        case .array(let xs):
            out.append(UInt8(ascii: "["))
            for (i, x) in xs.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                x.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let fields):
            out.append(UInt8(ascii: "{"))
            let sorted = fields.sorted { JSON.codePointLess($0.0, $1.0) }
            for (i, (k, v)) in sorted.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSON.writeString(k, into: &out)
                out.append(UInt8(ascii: ":"))
                v.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func codePointLess(_ a: String, _ b: String) -> Bool {
        a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars) { $0.value < $1.value }
    }

    private static func hex4(_ v: UInt32, into out: inout [UInt8]) {
        out += Array("\\u".utf8)
        for shift in [12, 8, 4, 0] as [UInt32] { out.append(hexDigits[Int((v >> shift) & 15)]) }
    }

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Fast path: printable ASCII without quotes/backslashes is copied as is.
        let utf8 = Array(s.utf8)
        if utf8.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E && $0 != 0x22 && $0 != 0x5C }) {
            out += utf8
            out.append(UInt8(ascii: "\""))
            return
        }
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += Array("\\\"".utf8)
            case "\\": out += Array("\\\\".utf8)
            case "\n": out += Array("\\n".utf8)
            case "\r": out += Array("\\r".utf8)
            case "\t": out += Array("\\t".utf8)
            case "\u{08}": out += Array("\\b".utf8)
            case "\u{0C}": out += Array("\\f".utf8)
            default:
                if u.value >= 0x20 && u.value <= 0x7E {
                    out.append(UInt8(u.value))
                } else if u.value < 0x10000 {
                    hex4(u.value, into: &out)
                } else {
                    let v = u.value - 0x10000
                    hex4(0xD800 + (v >> 10), into: &out)
                    hex4(0xDC00 + (v & 0x3FF), into: &out)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

// MARK: - Canonical descriptions (see Tests/tools/proto_crosscheck.py)

func describe(_ v: ProtoValue) -> JSON {
    switch v {
    case .null: return .null
    case .number(let d):
        let bits = String(d.bitPattern, radix: 16)
        return .object([("n", .string(String(repeating: "0", count: 16 - bits.count) + bits))])
    case .string(let s): return .object([("s", .string(s))])
    case .bool(let b): return .bool(b)
    case .structValue(let s): return .object([("o", describe(s))])
    case .list(let xs): return .array(xs.map(describe))
    }
}

func describe(_ s: ProtoStruct) -> JSON {
    .object(s.fields.map { ($0.0, describe($0.1)) })
}

func phaseName(_ p: ProcessingRequest.Phase) -> String {
    switch p {
    case .none: "none"
    case .requestHeaders: "requestHeaders"
    case .responseHeaders: "responseHeaders"
    case .requestBody: "requestBody"
    case .responseBody: "responseBody"
    case .requestTrailers: "requestTrailers"
    case .responseTrailers: "responseTrailers"
    }
}

func describe(_ r: ProcessingRequest, buffer: [UInt8]) -> JSON {
    let config: JSON
    if let c = r.protocolConfig {
        config = .object([("req", .int(Int64(c.requestBodyMode))), ("resp", .int(Int64(c.responseBodyMode))),
                          ("noWait", .bool(c.sendBodyWithoutWaitingForHeaderResponse))])
    } else {
        config = .null
    }
    return .object([
        ("phase", .string(phaseName(r.phase))),
        ("headers", .array(r.headers.map { .array([.string($0.name), .string($0.value)]) })),
        ("eos", .bool(r.endOfStream)),
        ("body", .string(hexString(buffer[r.body]))),
        ("metadata", .object(r.metadataContext.map { ($0.0, describe($0.1)) })),
        ("attributes", .object(r.attributes.map { ($0.0, describe($0.1)) })),
        ("observability", .bool(r.observabilityMode)),
        ("protocolConfig", config),
    ])
}

func describe(_ m: HeaderMutation) -> JSON {
    .object([
        ("set", .array(m.setHeaders.map { o in
            .object([("key", .string(o.key)), ("rawValue", .string(o.rawValue)),
                     ("append", o.append.map { .bool($0) } ?? .null)])
        })),
        ("remove", .array(m.removeHeaders.map { .string($0) })),
    ])
}

func describe(_ c: CommonResponse) -> JSON {
    .object([("status", .int(Int64(c.status))),
             ("headerMutation", c.headerMutation.map(describe) ?? .null),
             ("clearRouteCache", .bool(c.clearRouteCache))])
}

func describe(_ r: ProcessingResponse) -> JSON {
    var kind: JSON = .null, common: JSON = .null, streamed: JSON = .null, mutation: JSON = .null, immediate: JSON = .null
    func body(_ s: StreamedBodyResponse?) -> JSON {
        guard let s else { return .null }
        return .object([("body", .string(hexString(s.body))), ("eos", .bool(s.endOfStream))])
    }
    switch r.kind {
    case nil: break
    case .requestHeaders(let c)?: kind = .string("request_headers"); common = c.map(describe) ?? .null
    case .responseHeaders(let c)?: kind = .string("response_headers"); common = c.map(describe) ?? .null
    case .requestBody(let s)?: kind = .string("request_body"); streamed = body(s)
    case .responseBody(let s)?: kind = .string("response_body"); streamed = body(s)
    case .requestTrailers(let m)?: kind = .string("request_trailers"); mutation = m.map(describe) ?? .null
    case .responseTrailers(let m)?: kind = .string("response_trailers"); mutation = m.map(describe) ?? .null
    case .immediate(let i)?:
        kind = .string("immediate_response")
        immediate = .object([
            ("status", .int(Int64(i.status))),
            ("headers", i.headers.map(describe) ?? .null),
            ("body", .string(i.body)),
            ("grpcStatus", i.grpcStatus.map { .int(Int64($0)) } ?? .null),
            ("details", .string(i.details)),
        ])
    }
    let timeout: JSON = r.overrideMessageTimeoutSeconds.map {
        .array([.int($0), .int(Int64(r.overrideMessageTimeoutNanos))])
    } ?? .null
    return .object([
        ("kind", kind), ("common", common), ("streamed", streamed), ("mutation", mutation),
        ("immediate", immediate), ("dynamicMetadata", r.dynamicMetadata.map(describe) ?? .null),
        ("timeout", timeout),
    ])
}

// MARK: - Random generators

let textPool = ["", "a", "envoy.lb", "x-gateway-destination-endpoint", "10.0.0.1:8000", "héllo", "日本語",
                "emoji 😀", "quote\"back\\slash", "tab\tnl\nnul\u{0}", "\u{7f}\u{1f}", "/v1/completions",
                "e\u{301}", "\u{e9}", String(repeating: "a", count: 130), String(repeating: "ü", count: 70)]

func randomText(_ rng: inout SplitMix64) -> String {
    let r = Double.random(in: 0..<1, using: &rng)
    if r < 0.5 { return rng.pick(textPool) }
    if r < 0.8 {
        return String(String.UnicodeScalarView((0..<rng.int(0...20)).map { _ in
            Unicode.Scalar(UInt8(rng.int(0x20...0x7e)))
        }))
    }
    var scalars = String.UnicodeScalarView()
    for _ in 0..<rng.int(0...8) {
        let ranges: [ClosedRange<UInt32>] = [0...0x7f, 0x80...0x7ff, 0x800...0xd7ff, 0xe000...0xfffd, 0x10000...0x10ffff]
        let range = rng.pick(ranges)
        scalars.append(Unicode.Scalar(UInt32.random(in: range, using: &rng))!)
    }
    return String(scalars)
}

func randomBytes(_ rng: inout SplitMix64, max: Int = 64) -> [UInt8] {
    if rng.chance(0.2) { return [] }
    return (0..<rng.int(1...max)).map { _ in UInt8.random(in: 0...255, using: &rng) }
}

let interestingDoubles: [Double] = [0.0, -0.0, 1.0, -1.0, 10.0, 200.0, 0.1, 1e300, -1e-300, .leastNonzeroMagnitude,
                                    9007199254740992.0, .infinity, -.infinity, 123456.789]

func randomValue(_ rng: inout SplitMix64, depth: Int, maxDepth: Int = 5) -> ProtoValue {
    let choices = depth < maxDepth ? 6 : 4
    switch rng.int(0...(choices - 1)) {
    case 0: return .null
    case 1: return .number(rng.chance(0.5) ? rng.pick(interestingDoubles) : Double.random(in: -1e6...1e6, using: &rng))
    case 2: return .string(randomText(&rng))
    case 3: return .bool(rng.chance(0.5))
    case 4: return .structValue(randomStruct(&rng, depth: depth + 1, maxDepth: maxDepth))
    default: return .list((0..<rng.int(0...4)).map { _ in randomValue(&rng, depth: depth + 1, maxDepth: maxDepth) })
    }
}

/// Key order of upb's deterministic map serialization (python protobuf): bytewise on the
/// common prefix, and when one key is a prefix of the other the LONGER key first
/// ("abc" < "ab" < "a" < "ba" < "b" < ""). Only matters for the byte-equality
/// cross-check; Envoy does not care about map order.
func upbKeyOrder(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    for i in 0..<min(x.count, y.count) where x[i] != y[i] { return x[i] < y[i] }
    return x.count > y.count
}

/// Keys are unique and in upb's deterministic map order (see `upbKeyOrder`).
func randomStruct(_ rng: inout SplitMix64, depth: Int, maxDepth: Int = 5) -> ProtoStruct {
    var keys = Set<String>()
    for _ in 0..<rng.int(0...4) { keys.insert(randomText(&rng)) }
    let sorted = keys.sorted(by: upbKeyOrder)
    return ProtoStruct(sorted.map { ($0, randomValue(&rng, depth: depth, maxDepth: maxDepth)) })
}

func randomMutation(_ rng: inout SplitMix64) -> HeaderMutation {
    HeaderMutation(
        setHeaders: (0..<rng.int(0...4)).map { _ in
            HeaderValueOption(key: rng.chance(0.5) ? rng.pick(["x-gateway-destination-endpoint", "x-a", ":path"]) : randomText(&rng),
                              rawValue: randomText(&rng), append: rng.pick([nil, true, false]))
        },
        removeHeaders: (0..<rng.int(0...3)).map { _ in randomText(&rng) })
}

func randomResponse(_ rng: inout SplitMix64) -> ProcessingResponse {
    func common() -> CommonResponse? {
        rng.chance(0.2) ? nil : CommonResponse(status: rng.pick([0, 0, 0, 1, 5]),
                                               headerMutation: rng.chance(0.2) ? nil : randomMutation(&rng),
                                               clearRouteCache: rng.chance(0.5))
    }
    func streamed() -> StreamedBodyResponse? {
        if rng.chance(0.1) { return nil }
        let body = rng.chance(0.03) ? [UInt8](repeating: UInt8(rng.int(0...255)), count: 62_000) : randomBytes(&rng, max: 300)
        return StreamedBodyResponse(body: body, endOfStream: rng.chance(0.5))
    }
    func mutation() -> HeaderMutation? { rng.chance(0.3) ? nil : randomMutation(&rng) }
    var kind: ProcessingResponse.Kind?
    switch rng.int(0...7) {
    case 0: kind = .requestHeaders(common())
    case 1: kind = .responseHeaders(common())
    case 2: kind = .requestBody(streamed())
    case 3: kind = .responseBody(streamed())
    case 4: kind = .requestTrailers(mutation())
    case 5: kind = .responseTrailers(mutation())
    case 6:
        kind = .immediate(ImmediateResponse(status: rng.pick([200, 400, 429, 500, 503, 504, 0]),
                                            headers: rng.chance(0.5) ? nil : randomMutation(&rng),
                                            body: rng.chance(0.3) ? "" : randomText(&rng),
                                            grpcStatus: rng.pick([nil, nil, 0, 8, 14]),
                                            details: rng.chance(0.5) ? "" : randomText(&rng)))
    default: kind = nil
    }
    var metadata: ProtoStruct? = nil
    if rng.chance(0.4) {
        var keys = Set<String>()
        for _ in 0..<rng.int(0...3) { keys.insert(rng.chance(0.5) ? "envoy.lb" : randomText(&rng)) }
        let sorted = keys.sorted(by: upbKeyOrder)
        metadata = ProtoStruct(sorted.map {
            ($0, rng.chance(0.9) ? .structValue(randomStruct(&rng, depth: 2)) : randomValue(&rng, depth: 1))
        })
    }
    var response = ProcessingResponse(kind, dynamicMetadata: metadata)
    if kind == nil || rng.chance(0.1) {
        response.overrideMessageTimeoutSeconds = rng.pick([0, 1, 5, 3600, -2, Int64.max])
        response.overrideMessageTimeoutNanos = rng.pick([0, 0, 1_000_000, 999_999_999, -5])
    }
    return response
}
