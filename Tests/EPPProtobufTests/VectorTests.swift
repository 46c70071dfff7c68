import EPPProtobuf
import Testing

/// Hex test vectors V1–V27 from ext-proc.md §9.
enum V {
    static let v1 = "0a390a3712330a310a2f0a1e782d676174657761792d64657374696e6174696f6e2d656e64706f696e741a0d31302e302e302e313a38303030280142430a410a08656e766f792e6c6212352a330a310a1e782d676174657761792d64657374696e6174696f6e2d656e64706f696e74120f1a0d31302e302e302e313a38303030"
    static let v2 = "1a0f0a0d1a0b1a090a0568656c6c6f1001"
    static let v3 = "1a080a061a041a021001"
    static let v4 = "1200"
    static let v5 = "2a00"
    static let v6 = "3a250a0308f7031a0c6e6f20656e64706f696e74732a106570705f6e6f5f656e64706f696e7473"
    static let v7 = "3a090a0308ad0322020808"
    static let v8 = "52020805"
    static let v9 = "122d0a2b0a180a053a706174681a0f2f76312f636f6d706c6574696f6e730a0f0a073a6d6574686f641a04504f535442005a0408041004"
    static let v10 = "220f0a0d7b226d6f64656c223a226d227d4200"
    static let v11 = "220210014200"
    static let v12 = "1a120a100a0e0a073a7374617475731a0332303042580a560a14656e766f792e6c622e7375627365745f68696e74123e0a3c0a25782d676174657761792d64657374696e6174696f6e2d656e64706f696e742d737562736574121332110a0f1a0d31302e302e302e313a38303030"
    static let v13 = "0a470a4512410a3f0a3d0a1e782d676174657761792d64657374696e6174696f6e2d656e64706f696e741a1b31302e302e302e313a383030302c31302e302e302e323a38303030280142510a4f0a08656e766f792e6c6212432a410a3f0a1e782d676174657761792d64657374696e6174696f6e2d656e64706f696e74121d1a1b31302e302e302e313a383030302c31302e302e302e323a38303030"
    static let v14 = "0a630a61125d0a310a2f0a1e782d676174657761792d64657374696e6174696f6e2d656e64706f696e741a0d31302e302e302e333a383030300a280a260a15782d70726566696c6c65722d686f73742d706f72741a0d31302e302e302e393a38303030280142430a410a08656e766f792e6c6212352a330a310a1e782d676174657761792d64657374696e6174696f6e2d656e64706f696e74120f1a0d31302e302e302e333a38303030"
    static let v15 = "3a440a030890031a3d696e666572656e6365206572726f723a2042616452657175657374202d206d6f64656c206e6f7420666f756e6420696e207265717565737420626f6479"
    static let v16 = "22160a141a121a100a0e646174613a205b444f4e455d0a0a"
    static let v17 = "123b0a3912370a350a330a22782d636f6e666f726d616e63652d746573742d7365727665642d656e64706f696e741a0d31302e302e302e313a33303030"
    static let v18 = "0a760a7412700a310a2f0a1e782d676174657761792d64657374696e6174696f6e2d656e64706f696e741a0d31302e302e302e313a38303030121d782d676174657761792d696e666572656e63652d6f626a656374697665121c782d676174657761792d6d6f64656c2d6e616d652d72657772697465280142430a410a08656e766f792e6c6212352a330a310a1e782d676174657761792d64657374696e6174696f6e2d656e64706f696e74120f1a0d31302e302e302e313a38303030"
    static let v19 = "22080a061a041a021001423f0a3d0a08656e766f792e6c6212312a2f0a2d0a20782d676174657761792d696e666572656e63652d726571756573742d636f73741209110000000000002440"
    static let v20 = "0a080a03782d611a016212020801"
    static let v21 = "3200"
    static let v23 = "0a2b656e766f792e736572766963652e6578745f70726f632e76332e45787465726e616c50726f636573736f72"
    static let v25 = "22090a077b2261223a317d42620a600a14656e766f792e6c622e7375627365745f68696e7412480a460a25782d676174657761792d64657374696e6174696f6e2d656e64706f696e742d737562736574121d1a1b31302e302e302e313a383030302c31302e302e302e323a38303030"
    static let v26 = "320c0a0a0a080a03782d741a0131"
    static let v27 = "12140a100a0e0a073a6d6574686f641a0347455418014200"
}

let endpointHeader = "x-gateway-destination-endpoint"

func pickResponse(_ endpoint: String, extraHeaders: [HeaderValueOption] = [], remove: [String] = []) -> ProcessingResponse {
    ProcessingResponse(
        .requestHeaders(CommonResponse(
            headerMutation: HeaderMutation(
                setHeaders: [HeaderValueOption(key: endpointHeader, rawValue: endpoint)] + extraHeaders,
                removeHeaders: remove),
            clearRouteCache: true)),
        dynamicMetadata: ["envoy.lb": .structValue([endpointHeader: .string(endpoint)])])
}

func streamedBody(_ direction: ProcessingResponse.Direction, _ body: String, eos: Bool, metadata: ProtoStruct? = nil) -> [UInt8] {
    var w = WireWriter()
    ProcessingResponse.encodeStreamedBody(direction: direction, body: Array(body.utf8), endOfStream: eos,
                                          dynamicMetadata: metadata, into: &w)
    return w.bytes
}

@Suite("ext-proc.md §9 encoder vectors")
struct EncoderVectorTests {
    @Test func v1PickWithMetadata() {
        #expect(hexString(encode(pickResponse("10.0.0.1:8000"))) == V.v1)
    }

    @Test func v2StreamedBodyEOS() {
        #expect(hexString(streamedBody(.request, "hello", eos: true)) == V.v2)
        #expect(hexString(encode(ProcessingResponse(.requestBody(StreamedBodyResponse(body: bytes("hello"), endOfStream: true))))) == V.v2)
    }

    @Test func v3EmptyBodyEOS() {
        #expect(hexString(streamedBody(.request, "", eos: true)) == V.v3)
        #expect(hexString(encode(ProcessingResponse(.requestBody(StreamedBodyResponse(endOfStream: true))))) == V.v3)
    }

    @Test func v4v5v21EmptyOneofMembers() {
        #expect(hexString(encode(ProcessingResponse(.responseHeaders(nil)))) == V.v4)
        #expect(hexString(encode(ProcessingResponse(.requestTrailers(nil)))) == V.v5)
        #expect(hexString(encode(ProcessingResponse(.responseTrailers(nil)))) == V.v21)
    }

    @Test func v6ImmediateNoEndpoints() {
        let r = ProcessingResponse(.immediate(ImmediateResponse(status: 503, body: "no endpoints", details: "epp_no_endpoints")))
        #expect(hexString(encode(r)) == V.v6)
    }

    @Test func v7ImmediateWithGrpcStatus() {
        let r = ProcessingResponse(.immediate(ImmediateResponse(status: 429, grpcStatus: 8)))
        #expect(hexString(encode(r)) == V.v7)
    }

    @Test func v8OverrideMessageTimeout() {
        #expect(hexString(encode(ProcessingResponse(nil, overrideMessageTimeoutSeconds: 5))) == V.v8)
    }

    @Test func v13FallbackList() {
        #expect(hexString(encode(pickResponse("10.0.0.1:8000,10.0.0.2:8000"))) == V.v13)
    }

    @Test func v14PrefillDecode() {
        let r = pickResponse("10.0.0.3:8000", extraHeaders: [HeaderValueOption(key: "x-prefiller-host-port", rawValue: "10.0.0.9:8000")])
        #expect(hexString(encode(r)) == V.v14)
    }

    @Test func v15ImmediateBadRequest() {
        let r = ProcessingResponse(.immediate(ImmediateResponse(
            status: 400, body: "inference error: BadRequest - model not found in request body")))
        #expect(hexString(encode(r)) == V.v15)
    }

    @Test func v16ResponseBodyChunk() {
        #expect(hexString(streamedBody(.response, "data: [DONE]\n\n", eos: false)) == V.v16)
    }

    @Test func v17ResponseHeadersMutation() {
        let r = ProcessingResponse(.responseHeaders(CommonResponse(headerMutation: HeaderMutation(setHeaders: [
            HeaderValueOption(key: "x-conformance-test-served-endpoint", rawValue: "10.0.0.1:3000"),
        ]))))
        #expect(hexString(encode(r)) == V.v17)
    }

    @Test func v18RemoveHeaders() {
        let r = pickResponse("10.0.0.1:8000", remove: ["x-gateway-inference-objective", "x-gateway-model-name-rewrite"])
        #expect(hexString(encode(r)) == V.v18)
    }

    @Test func v19BodyEOSWithCostMetadata() {
        let md: ProtoStruct = ["envoy.lb": .structValue(["x-gateway-inference-request-cost": .number(10.0)])]
        #expect(hexString(streamedBody(.response, "", eos: true, metadata: md)) == V.v19)
        let r = ProcessingResponse(.responseBody(StreamedBodyResponse(endOfStream: true)), dynamicMetadata: md)
        #expect(hexString(encode(r)) == V.v19)
    }

    @Test func v20HeaderValueOptionAppend() {
        var w = WireWriter()
        HeaderValueOption(key: "x-a", rawValue: "b", append: true).encode(into: &w)
        #expect(hexString(w.bytes) == V.v20)
        var f = WireWriter()
        HeaderValueOption(key: "x-a", rawValue: "b", append: false).encode(into: &f)
        #expect(hexString(f.bytes) == "0a080a03782d611a01621200")
        var n = WireWriter()
        HeaderValueOption(key: "x-a", rawValue: "b").encode(into: &n)
        #expect(hexString(n.bytes) == "0a080a03782d611a0162")
    }

    @Test func v22HealthResponses() {
        #expect(HealthCheckResponse.encode(status: .serving) == [0x08, 0x01])
        #expect(HealthCheckResponse.encode(status: .notServing) == [0x08, 0x02])
        #expect(HealthCheckResponse.encode(status: .serviceUnknown) == [0x08, 0x03])
        #expect(HealthCheckResponse.encode(status: .unknown) == [])
        var out: [UInt8] = []
        WireWriter.appendGRPCFrame(to: &out) { HealthCheckResponse.encode(status: .serving, into: &$0) }
        #expect(hexString(out) == "00000000020801")
    }

    @Test(arguments: [
        (V.v1, "0000000080"), (V.v2, "0000000011"), (V.v3, "000000000a"), (V.v4, "0000000002"),
        (V.v5, "0000000002"), (V.v6, "0000000027"), (V.v7, "000000000b"), (V.v8, "0000000004"),
        (V.v13, "000000009c"), (V.v14, "00000000aa"), (V.v15, "0000000046"), (V.v16, "0000000018"),
        (V.v17, "000000003d"), (V.v18, "00000000bd"), (V.v19, "000000004b"), (V.v21, "0000000002"),
    ])
    func grpcPrefix(vector: String, prefix: String) throws {
        let message = hex(vector)
        let decoded = try ProcessingResponse.decode(message)
        var out: [UInt8] = [0xEE]  // pre-existing content must be kept
        decoded.appendGRPCFrame(to: &out)
        #expect(hexString(out) == "ee" + prefix + vector)
        var raw: [UInt8] = []
        ProcessingResponse.appendGRPCFrame(to: &raw) { w in message.withUnsafeBytes { w.writeRawBytes($0) } }
        #expect(hexString(raw) == prefix + vector)
    }

    @Test func streamedBodyInsideGRPCFrame() {
        var out: [UInt8] = []
        WireWriter.appendGRPCFrame(to: &out) { w in
            ProcessingResponse.encodeStreamedBody(direction: .request, body: bytes("hello"), endOfStream: true, into: &w)
        }
        WireWriter.appendGRPCFrame(to: &out) { w in
            ProcessingResponse.encodeStreamedBody(direction: .response, body: bytes("data: [DONE]\n\n"), endOfStream: false, into: &w)
        }
        #expect(hexString(out) == "0000000011" + V.v2 + "0000000018" + V.v16)
    }
}

@Suite("ext-proc.md §9 decoder vectors")
struct DecoderVectorTests {
    @Test func v9RequestHeadersWithProtocolConfig() throws {
        let r = try ProcessingRequest.decode(hex(V.v9))
        #expect(r.phase == .requestHeaders)
        #expect(r.headers == [HeaderField(name: ":path", value: "/v1/completions"), HeaderField(name: ":method", value: "POST")])
        #expect(r.header(":method") == "POST")
        #expect(!r.endOfStream)
        #expect(r.body.isEmpty)
        #expect(r.metadataContext.isEmpty)
        #expect(r.attributes.isEmpty)
        #expect(!r.observabilityMode)
        #expect(r.protocolConfig == ProtocolConfiguration(requestBodyMode: 4, responseBodyMode: 4))
        #expect(r.protocolConfig?.requestBodySendMode == .fullDuplexStreamed)
        #expect(r.protocolConfig?.responseBodySendMode == .fullDuplexStreamed)
    }

    @Test func v10RequestBody() throws {
        let input = hex(V.v10)
        let r = try ProcessingRequest.decode(input)
        #expect(r.phase == .requestBody)
        #expect(r.body == 4..<17)
        #expect(String(decoding: input[r.body], as: UTF8.self) == "{\"model\":\"m\"}")
        #expect(!r.endOfStream)
        #expect(r.headers.isEmpty)
        #expect(r.metadataContext.isEmpty)
        #expect(r.protocolConfig == nil)
    }

    @Test func v11EmptyBodyEOS() throws {
        let r = try ProcessingRequest.decode(hex(V.v11))
        #expect(r.phase == .requestBody)
        #expect(r.endOfStream)
        #expect(r.body.isEmpty)
    }

    @Test func v12SubsetHintList() throws {
        let r = try ProcessingRequest.decode(hex(V.v12))
        #expect(r.phase == .responseHeaders)
        #expect(r.headers == [HeaderField(name: ":status", value: "200")])
        #expect(r.metadataContext.count == 1)
        let hint = try #require(r.filterMetadata("envoy.lb.subset_hint"))
        #expect(hint["x-gateway-destination-endpoint-subset"] == .list([.string("10.0.0.1:8000")]))
        #expect(hint.count == 1)
        #expect(r.filterMetadata("envoy.lb") == nil)
    }

    @Test func v25SubsetHintCommaString() throws {
        let input = hex(V.v25)
        let r = try ProcessingRequest.decode(input)
        #expect(r.phase == .requestBody)
        #expect(Array(input[r.body]) == bytes("{\"a\":1}"))
        let hint = try #require(r.filterMetadata("envoy.lb.subset_hint"))
        #expect(hint["x-gateway-destination-endpoint-subset"] == .string("10.0.0.1:8000,10.0.0.2:8000"))
    }

    @Test func v26RequestTrailers() throws {
        let r = try ProcessingRequest.decode(hex(V.v26))
        #expect(r.phase == .requestTrailers)
        #expect(r.headers == [HeaderField(name: "x-t", value: "1")])
        #expect(!r.endOfStream)
        #expect(r.metadataContext.isEmpty)
    }

    @Test func v27GetWithEOS() throws {
        let r = try ProcessingRequest.decode(hex(V.v27))
        #expect(r.phase == .requestHeaders)
        #expect(r.headers == [HeaderField(name: ":method", value: "GET")])
        #expect(r.endOfStream)
    }

    @Test func v23v24HealthCheckRequest() throws {
        #expect(try HealthCheckRequest.decode(hex(V.v23)) == "envoy.service.ext_proc.v3.ExternalProcessor")
        #expect(try HealthCheckRequest.decode([UInt8]()) == "")
        var w = WireWriter()
        HealthCheckRequest.encode(service: "envoy.service.ext_proc.v3.ExternalProcessor", into: &w)
        #expect(hexString(w.bytes) == V.v23)
    }

    /// Our Envoy-side request encoder reproduces the Envoy vectors byte-for-byte.
    @Test(arguments: [V.v9, V.v10, V.v11, V.v12, V.v25, V.v27])
    func requestReencoding(vector: String) throws {
        let input = hex(vector)
        let r = try ProcessingRequest.decode(input)
        #expect(hexString(r.encoded(body: Array(input[r.body]))) == vector)
    }

    @Test func v26Reencoding() throws {
        let r = try ProcessingRequest.decode(hex(V.v26))
        #expect(hexString(r.encoded(emitEmptyMetadataContext: false)) == V.v26)
    }

    /// The response vectors decode back into the values that produced them.
    @Test func responseVectorsDecode() throws {
        #expect(try ProcessingResponse.decode(hex(V.v1)) == pickResponse("10.0.0.1:8000"))
        #expect(try ProcessingResponse.decode(hex(V.v2)) == ProcessingResponse(.requestBody(StreamedBodyResponse(body: bytes("hello"), endOfStream: true))))
        #expect(try ProcessingResponse.decode(hex(V.v4)) == ProcessingResponse(.responseHeaders(nil)))
        #expect(try ProcessingResponse.decode(hex(V.v7)) == ProcessingResponse(.immediate(ImmediateResponse(status: 429, grpcStatus: 8))))
        #expect(try ProcessingResponse.decode(hex(V.v8)) == ProcessingResponse(nil, overrideMessageTimeoutSeconds: 5))
        let v19 = try ProcessingResponse.decode(hex(V.v19))
        #expect(v19.dynamicMetadata?["envoy.lb"] == .structValue(["x-gateway-inference-request-cost": .number(10)]))
        let v20 = try hex(V.v20).withUnsafeBytes { try HeaderValueOption.decode($0) }
        #expect(v20 == HeaderValueOption(key: "x-a", rawValue: "b", append: true))
    }
}
