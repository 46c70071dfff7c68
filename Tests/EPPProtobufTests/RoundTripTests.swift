import EPPProtobuf
import Testing

@Suite("Randomized round trips (seeded)")
struct RoundTripTests {
    @Test(arguments: [1, 2, 3] as [UInt64])
    func structTrees(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        for _ in 0..<300 {
            let s = randomStruct(&rng, depth: 1, maxDepth: 8)
            let encoded = s.encoded()
            let decoded = try ProtoStruct.decode(encoded)
            #expect(decoded == s)
            // Deterministic: re-encoding gives the same bytes.
            #expect(decoded.encoded() == encoded)
        }
    }

    @Test(arguments: [11, 12, 13] as [UInt64])
    func processingResponses(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        for _ in 0..<300 {
            let r = randomResponse(&rng)
            let encoded = r.encoded()
            let decoded = try ProcessingResponse.decode(encoded)
            #expect(decoded == r, "\(hexString(encoded))")
            #expect(decoded.encoded() == encoded)
        }
    }

    @Test(arguments: [21, 22] as [UInt64])
    func processingRequests(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let phases: [ProcessingRequest.Phase] = [.none, .requestHeaders, .responseHeaders, .requestBody,
                                                 .responseBody, .requestTrailers, .responseTrailers]
        for _ in 0..<200 {
            var r = ProcessingRequest()
            r.phase = rng.pick(phases)
            var body: [UInt8] = []
            if r.isHeaders || r.isTrailers {
                r.headers = (0..<rng.int(0...5)).map { _ in HeaderField(name: randomText(&rng), value: randomText(&rng)) }
            }
            if r.isBody { body = randomBytes(&rng, max: 500) }
            if r.isHeaders || r.isBody { r.endOfStream = rng.chance(0.5) }
            r.metadataContext = randomStruct(&rng, depth: 1).fields.map { ($0.0, randomStruct(&rng, depth: 1)) }
            r.attributes = randomStruct(&rng, depth: 1).fields.map { ($0.0, randomStruct(&rng, depth: 1)) }
            r.observabilityMode = rng.chance(0.2)
            if rng.chance(0.5) {
                r.protocolConfig = ProtocolConfiguration(requestBodyMode: rng.pick([0, 1, 4, 9, -3]),
                                                         responseBodyMode: rng.pick([0, 2, 4]),
                                                         sendBodyWithoutWaitingForHeaderResponse: rng.chance(0.5))
            }
            let encoded = r.encoded(body: body)
            let decoded = try ProcessingRequest.decode(encoded)
            #expect(Array(encoded[decoded.body]) == body)
            // HeaderMap values go out as raw_value, so empty values come back as "".
            #expect(describe(decoded, buffer: encoded).canonical == describe(r, buffer: [UInt8]()).canonicalWithBody(body))
        }
    }

    @Test func healthList() throws {
        let statuses: [(String, ServingStatus)] = [("", .serving), ("liveness", .serving), ("readiness", .notServing),
                                                   ("envoy.service.ext_proc.v3.ExternalProcessor", .unknown)]
        let encoded = HealthListResponse.encode(statuses: statuses)
        let decoded = try encoded.withUnsafeBytes { try HealthListResponse.decode($0) }
        #expect(decoded.map(\.0) == statuses.map(\.0))
        #expect(decoded.map(\.1) == statuses.map(\.1.rawValue))
        // Entry for UNKNOWN carries an empty HealthCheckResponse value (`12 00`).
        #expect(hexString(encoded).contains("12" + "00"))
    }

    @Test func protoStructAPI() {
        var s: ProtoStruct = ["a": .number(1), "b": .string("x")]
        s.set("a", .bool(true))
        #expect(s.fields.map(\.0) == ["a", "b"])
        #expect(s["a"] == .bool(true))
        s["c"] = .null
        s["b"] = nil
        #expect(s == ["a": .bool(true), "c": .null])
        #expect(s != ["c": .null, "a": .bool(true)])  // order matters for equality
        // Raw duplicates: subscript reads the last one.
        let dup = ProtoStruct([("k", .number(1)), ("k", .number(2))])
        #expect(dup["k"] == .number(2))
        #expect(dup.encoded().count > 0)
    }
}

extension JSON {
    /// The description of a request built in memory has an empty body (the bytes
    /// are passed separately); patch in the real body hex.
    func canonicalWithBody(_ body: [UInt8]) -> String {
        guard case .object(var fields) = self else { return canonical }
        for i in fields.indices where fields[i].0 == "body" { fields[i].1 = .string(hexString(body)) }
        return JSON.object(fields).canonical
    }
}
