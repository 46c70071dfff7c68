import EPPProtobuf
import Testing

/// Builds a message with a WireWriter.
func message(_ body: (inout WireWriter) -> Void) -> [UInt8] {
    var w = WireWriter()
    body(&w)
    return w.bytes
}

extension WireWriter {
    mutating func raw(_ b: [UInt8]) { bytes.append(contentsOf: b) }
}

/// Unknown fields of every wire type (plus a known field number with the wrong wire type).
let unknownFieldSamples: [[UInt8]] = [
    hex("6200"),                              // field 12 (flow_control_init), empty
    hex("6a020801"),                          // field 13 (client_window_update)
    hex("7801"),                              // field 15 varint
    hex("78ffffffffffffffffff01"),            // field 15, 10-byte varint
    hex("8101" + "0102030405060708"),         // field 16 fixed64
    hex("8d01" + "01020304"),                 // field 17 fixed32
    hex("9201" + "03" + "aabbcc"),            // field 18 length-delimited
    hex("f8ffffff0f" + "00"),                 // field 2^29-1 varint
    hex("15" + "00000000"),                   // field 2 with wire type 5 (mismatch => unknown)
    hex("0801"),                              // field 1 varint (reserved / key with wrong type)
]

/// V9 rebuilt with `u` inserted at the start and end of the message at nesting `level`
/// (0 top, 1 HttpHeaders, 2 HeaderMap, 3 HeaderValue, 4 Metadata, 5 ProtocolConfiguration)
/// and `mid` in the middle of the top level.
func v9With(unknown u: [UInt8], level: Int) -> [UInt8] {
    func wrap(_ l: Int, _ w: inout WireWriter, _ body: (inout WireWriter) -> Void) {
        if l == level { w.raw(u) }
        body(&w)
        if l == level { w.raw(u) }
    }
    return message { top in
        wrap(0, &top) { top in
            top.writeMessage(field: 2) { hh in
                wrap(1, &hh) { hh in
                    hh.writeMessage(field: 1) { hm in
                        wrap(2, &hm) { hm in
                            for (k, v) in [(":path", "/v1/completions"), (":method", "POST")] {
                                hm.writeMessage(field: 1) { hv in
                                    wrap(3, &hv) { hv in
                                        hv.writeString(field: 1, k)
                                        hv.writeString(field: 3, v)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if level == 0 { top.raw(u) }
            top.writeMessage(field: 8) { md in wrap(4, &md) { _ in } }
            top.writeMessage(field: 11) { pc in
                wrap(5, &pc) { pc in
                    pc.writeVarintField(field: 1, 4)
                    pc.writeVarintField(field: 2, 4)
                }
            }
        }
    }
}

@Suite("ProcessingRequest decoder robustness")
struct DecoderRobustnessTests {
    let v9 = hex(V.v9)
    var v9Description: String {
        get throws { describe(try ProcessingRequest.decode(v9), buffer: v9).canonical }
    }

    @Test func rebuiltV9MatchesVector() {
        #expect(hexString(v9With(unknown: [], level: -1)) == V.v9)
    }

    @Test func appendedUnknownFieldsFromSpec() throws {
        for tail in ["6200", "6a020801", "62006a020801"] {
            let input = v9 + hex(tail)
            #expect(describe(try ProcessingRequest.decode(input), buffer: input).canonical == (try v9Description))
        }
    }

    @Test(arguments: 0...5)
    func unknownFieldsAtEveryLevel(level: Int) throws {
        let expected = try v9Description
        // `08 01` is a known field (request_body_mode) inside ProtocolConfiguration (level 5).
        for u in unknownFieldSamples where !(level == 5 && u == hex("0801")) {
            // At HeaderValue level `08 01` is `key` with the wrong wire type: skipped like an unknown field.
            let input = v9With(unknown: u, level: level)
            let decoded = try ProcessingRequest.decode(input)
            #expect(describe(decoded, buffer: input).canonical == expected, "unknown \(hexString(u)) at level \(level)")
        }
    }

    @Test func unknownFieldsInsideStructs() throws {
        // metadata_context{filter_metadata{"ns": Struct{fields{"k": Value{list_value{values[string "a"]}}}}}}
        // with unknown fields at every Struct/Value/ListValue level.
        let u = hex("7801" + "8101" + "0102030405060708" + "8d01" + "01020304" + "9201" + "00")
        let input = message { top in
            top.writeMessage(field: 8) { md in
                md.raw(u)
                md.writeMessage(field: 1) { entry in
                    entry.raw(u)
                    entry.writeString(field: 1, "ns")
                    entry.writeMessage(field: 2) { s in
                        s.raw(u)
                        s.writeMessage(field: 1) { fe in
                            fe.raw(u)
                            fe.writeString(field: 1, "k")
                            fe.writeMessage(field: 2) { v in
                                v.raw(u)
                                v.writeMessage(field: 6) { l in
                                    l.raw(u)
                                    l.writeMessage(field: 1) { lv in
                                        lv.raw(u)
                                        lv.writeString(field: 3, "a")
                                        lv.raw(u)
                                    }
                                    l.raw(u)
                                }
                                v.raw(u)
                            }
                            fe.raw(u)
                        }
                        s.raw(u)
                    }
                    entry.raw(u)
                }
                // typed_filter_metadata (skipped)
                md.writeMessage(field: 2) { e in
                    e.writeString(field: 1, "typed")
                    e.writeMessage(field: 2) { any in any.writeString(field: 1, "type.googleapis.com/x") }
                }
            }
        }
        let r = try ProcessingRequest.decode(input)
        #expect(r.metadataContext.count == 1)
        #expect(r.filterMetadata("ns") == ["k": .list([.string("a")])])
        #expect(r.filterMetadata("typed") == nil)
    }

    @Test func fieldsOutOfOrder() throws {
        // protocol_config, metadata_context, then request_headers; HeaderValue with raw_value before key.
        let input = hex("5a0408041004" + "4200" + "122d0a2b0a18" + "1a0f2f76312f636f6d706c6574696f6e73" + "0a053a70617468"
                        + "0a0f0a073a6d6574686f641a04504f5354")
        #expect(describe(try ProcessingRequest.decode(input), buffer: input).canonical == (try v9Description))
    }

    @Test func tenByteNegativeVarint() throws {
        // protocol_config{request_body_mode: -1, response_body_mode: 4}
        let input = hex("5a0d" + "08ffffffffffffffffff01" + "1004")
        let r = try ProcessingRequest.decode(input)
        #expect(r.protocolConfig?.requestBodyMode == -1)
        #expect(r.protocolConfig?.requestBodySendMode == nil)
        #expect(r.protocolConfig?.responseBodyMode == 4)
        // Unknown enum values are kept.
        let r7 = try ProcessingRequest.decode(hex("5a020807"))
        #expect(r7.protocolConfig?.requestBodyMode == 7)
    }

    @Test func truncatedPrefixesOfV9AndV12() throws {
        // Prefixes ending exactly at a top-level field boundary are complete messages.
        for (vector, boundaries) in [(V.v9, Set([0, 47, 49, 55])), (V.v12, Set([0, 20, 110]))] {
            let full = hex(vector)
            for n in 0..<full.count {
                let prefix = Array(full[..<n])
                if boundaries.contains(n) {
                    #expect(throws: Never.self) { _ = try ProcessingRequest.decode(prefix) }
                } else {
                    #expect(throws: ProtoDecodingError.self, "prefix \(n) of \(vector.prefix(8))") {
                        _ = try ProcessingRequest.decode(prefix)
                    }
                }
            }
        }
    }

    @Test func truncatedPrefixesOfResponsesAndStructs() {
        for vector in [V.v1, V.v6, V.v13, V.v14, V.v18, V.v19] {
            let full = hex(vector)
            for n in 1..<full.count {
                // Never crashes; most prefixes are errors (none of these vectors has an inner boundary
                // at a prefix length except where the top level ends).
                _ = try? ProcessingResponse.decode(Array(full[..<n]))
            }
        }
        let s = hex("0a3c0a25782d676174657761792d64657374696e6174696f6e2d656e64706f696e742d737562736574121332110a0f1a0d31302e302e302e313a38303030")
        for n in 1..<s.count {
            #expect(throws: ProtoDecodingError.self) { _ = try ProtoStruct.decode(Array(s[..<n])) }
        }
    }

    @Test(arguments: [3, 4, 6, 7])
    func invalidWireTypes(wireType: Int) throws {
        // At the top level (field 12), inside HttpHeaders, and inside a Struct.
        let tagByte = UInt8(12 << 3 | wireType)
        let top = hex(V.v9) + [tagByte, 0]
        let error = try #require(throws: ProtoDecodingError.self) { _ = try ProcessingRequest.decode(top) }
        #expect(error.kind == .unsupportedWireType(wireType))
        #expect(error.field == 12)
        if wireType == 3 || wireType == 4 {
            #expect(error.description.contains("groups"))
        }
        let nested = hex("1203") + [UInt8(5 << 3 | wireType), 0, 0]
        #expect(throws: ProtoDecodingError.self) { _ = try ProcessingRequest.decode(nested) }
        let inStruct = hex("4205" + "0a03" + "1201") + [UInt8(9 << 3 | wireType)]
        #expect(throws: ProtoDecodingError.self) { _ = try ProcessingRequest.decode(inStruct) }
    }

    @Test func malformedInputs() {
        let cases: [(String, String)] = [
            ("0001", "field number 0"),
            ("12ff", "truncated length varint"),
            ("1205", "length beyond input"),
            ("12ffffffffffffffffff01", "huge length"),
            ("50", "missing varint"),
            ("50ffffffffffffffffff02", "varint overflow in 10th byte"),
            ("50ffffffffffffffffffff01", "11-byte varint"),
            ("5180", "truncated fixed64 (unknown field 10 wt1)"),
            ("5d0000", "truncated fixed32"),
            ("ffffffffffffffffffff01", "tag overflow"),
            ("f8ffffff1f00", "field number 2^29 too large"),
        ]
        for (input, what) in cases {
            #expect(throws: ProtoDecodingError.self, "\(what)") { _ = try ProcessingRequest.decode(hex(input)) }
        }
    }

    @Test func nestingDepthCap() throws {
        func nestedStruct(_ depth: Int) -> ProtoStruct {
            var s: ProtoStruct = ["leaf": .bool(true)]
            for _ in 1..<depth { s = ["n": .structValue(s)] }
            return s
        }
        func nestedLists(_ depth: Int) -> ProtoStruct {
            // Struct (1) -> list (2) -> list (3) ...
            var v: ProtoValue = .null
            for _ in 1..<depth { v = .list([v]) }
            return ["l": v]
        }
        for make in [nestedStruct, nestedLists] {
            let ok = make(32).encoded()
            #expect(try ProtoStruct.decode(ok) == make(32))
            let tooDeep = make(33).encoded()
            let error = try #require(throws: ProtoDecodingError.self) { _ = try ProtoStruct.decode(tooDeep) }
            #expect(error.kind == .nestingTooDeep(limit: 32))
            #expect(error.description.contains("nesting too deep"))
            // Also through metadata_context and attributes (each Struct starts at depth 1).
            let viaMetadata = message { w in
                w.writeMessage(field: 8) { m in
                    m.writeMessage(field: 1) { e in
                        e.writeString(field: 1, "ns")
                        e.writeStruct(field: 2, make(33))
                    }
                }
            }
            #expect(throws: ProtoDecodingError.self) { _ = try ProcessingRequest.decode(viaMetadata) }
            let viaAttributes = message { w in
                w.writeMessage(field: 9) { e in
                    e.writeString(field: 1, "a")
                    e.writeStruct(field: 2, make(32))
                }
            }
            #expect(try ProcessingRequest.decode(viaAttributes).attribute("a") == make(32))
        }
    }

    @Test func mergeSemantics() throws {
        // request_headers twice: header lists concatenate, end_of_stream from the second.
        func headersPiece(_ k: String, _ v: String, eos: Bool, field: Int = 2) -> [UInt8] {
            message { w in
                w.writeMessage(field: field) { hh in
                    hh.writeMessage(field: 1) { hm in
                        hm.writeMessage(field: 1) { hv in
                            hv.writeString(field: 1, k)
                            hv.writeString(field: 3, v)
                        }
                    }
                    hh.writeBool(field: 3, eos)
                }
            }
        }
        let twice = headersPiece("a", "1", eos: false) + hex("4200") + headersPiece("b", "2", eos: true)
        let r = try ProcessingRequest.decode(twice)
        #expect(r.phase == .requestHeaders)
        #expect(r.headers == [HeaderField(name: "a", value: "1"), HeaderField(name: "b", value: "2")])
        #expect(r.endOfStream)
        // end_of_stream set by the first piece survives a second piece that omits it.
        let keep = try ProcessingRequest.decode(headersPiece("a", "1", eos: true) + headersPiece("b", "2", eos: false))
        #expect(keep.endOfStream)
        #expect(keep.headers.count == 2)

        // A later, different oneof member replaces the earlier one.
        let replaced = headersPiece("a", "1", eos: true) + hex("22030a0178")
        let r2 = try ProcessingRequest.decode(replaced)
        #expect(r2.phase == .requestBody)
        #expect(r2.headers.isEmpty)
        #expect(!r2.endOfStream)
        #expect(Array(replaced[r2.body]) == bytes("x"))
        let backToHeaders = try ProcessingRequest.decode(replaced + headersPiece("c", "3", eos: false, field: 3))
        #expect(backToHeaders.phase == .responseHeaders)
        #expect(backToHeaders.body.isEmpty)
        #expect(backToHeaders.headers == [HeaderField(name: "c", value: "3")])

        // Body given twice (same member): last range wins; end_of_stream kept from the first.
        let bodyTwice = hex("22051001" + "0a0161" + "22030a0162")
        let r3 = try ProcessingRequest.decode(bodyTwice)
        #expect(Array(bodyTwice[r3.body]) == bytes("b"))
        #expect(r3.endOfStream)

        // Scalars: last wins.
        #expect(try ProcessingRequest.decode(hex("50015000")).observabilityMode == false)
        #expect(try ProcessingRequest.decode(hex("50005002")).observabilityMode == true)

        // protocol_config twice merges.
        let pc = try ProcessingRequest.decode(hex("5a020804" + "5a021004" + "5a021801"))
        #expect(pc.protocolConfig == ProtocolConfiguration(requestBodyMode: 4, responseBodyMode: 4,
                                                           sendBodyWithoutWaitingForHeaderResponse: true))

        // metadata_context twice: maps merge; a duplicate namespace key replaces (last wins).
        func mdEntry(_ ns: String, _ k: String, _ v: String) -> [UInt8] {
            message { w in
                w.writeMessage(field: 8) { m in
                    m.writeMessage(field: 1) { e in
                        e.writeString(field: 1, ns)
                        e.writeStruct(field: 2, [k: .string(v)])
                    }
                }
            }
        }
        let md = try ProcessingRequest.decode(mdEntry("a", "k", "1") + mdEntry("b", "k", "2") + mdEntry("a", "j", "3"))
        #expect(md.metadataContext.map(\.0) == ["a", "b"])
        #expect(md.filterMetadata("a") == ["j": .string("3")])
        #expect(md.filterMetadata("b") == ["k": .string("2")])
    }

    @Test func duplicateMapKeysLastWins() throws {
        // attributes with duplicate keys; Struct with duplicate keys.
        let input = message { w in
            for (k, v) in [("x", 1.0), ("y", 2.0), ("x", 3.0)] {
                w.writeMessage(field: 9) { e in
                    e.writeString(field: 1, k)
                    e.writeMessage(field: 2) { s in
                        for (fk, fv) in [("n", v), ("m", 0.5), ("n", v + 10)] {
                            s.writeMessage(field: 1) { fe in
                                fe.writeString(field: 1, fk)
                                fe.writeMessage(field: 2) { $0.writeDouble(field: 2, fv, emitDefault: true) }
                            }
                        }
                    }
                }
            }
        }
        let r = try ProcessingRequest.decode(input)
        #expect(r.attributes.map(\.0) == ["x", "y"])
        #expect(r.attribute("x") == ["n": .number(13), "m": .number(0.5)])
        #expect(r.attribute("y") == ["n": .number(12), "m": .number(0.5)])
        #expect(r.attribute("x")?.fields.map(\.0) == ["n", "m"])

        // Many keys (exercises the indexed path) with duplicates.
        var big = WireWriter()
        for i in 0..<200 {
            big.writeMessage(field: 1) { fe in
                fe.writeString(field: 1, "k\(i % 50)")
                fe.writeMessage(field: 2) { $0.writeDouble(field: 2, Double(i), emitDefault: true) }
            }
        }
        let s = try ProtoStruct.decode(big.bytes)
        #expect(s.count == 50)
        #expect(s["k0"] == .number(150))
        #expect(s["k49"] == .number(199))
        #expect(s.fields.first?.0 == "k0")
    }

    @Test func mapEntriesMayOmitKeyOrValue() throws {
        // attributes entry with neither key nor value; metadata entry with only a key.
        let r = try ProcessingRequest.decode(hex("4a00" + "42050a030a0161"))
        #expect(r.attributes.count == 1)
        #expect(r.attribute("") == ProtoStruct())
        #expect(r.filterMetadata("a") == ProtoStruct())
        // Struct entry with key only => null value; Value with no kind => null.
        #expect(try ProtoStruct.decode(hex("0a030a0161")) == ["a": .null])
        #expect(try ProtoStruct.decode(hex("0a050a016112 00".replacingOccurrences(of: " ", with: ""))) == ["a": .null])
        #expect(try ProtoStruct.decode(hex("0a0412020801")) == ["": .null])
    }

    @Test func headerValueSelectionAndLenientUTF8() throws {
        // value only; raw_value only; both (raw wins); raw empty + value; invalid UTF-8 repaired.
        let input = message { w in
            w.writeMessage(field: 2) { hh in
                hh.writeMessage(field: 1) { hm in
                    let cases: [(String, [UInt8]?, [UInt8]?)] = [
                        ("v-only", bytes("val"), nil),
                        ("raw-only", nil, bytes("raw")),
                        ("both", bytes("val"), bytes("raw")),
                        ("empty-raw", bytes("val"), []),
                        ("bad-utf8", nil, [0x61, 0xff, 0x62, 0xc3]),
                        ("none", nil, nil),
                    ]
                    for (k, v, raw) in cases {
                        hm.writeMessage(field: 1) { hv in
                            hv.writeString(field: 1, k)
                            if let v { hv.writeBytes(field: 2, v) }
                            if let raw { hv.writeBytes(field: 3, raw, emitDefault: true) }
                        }
                    }
                }
                // Deprecated HttpHeaders.attributes (field 2) is skipped.
                hh.writeMessage(field: 2) { e in
                    e.writeString(field: 1, "attr")
                    e.writeStruct(field: 2, ["a": .bool(true)])
                }
            }
        }
        let r = try ProcessingRequest.decode(input)
        #expect(r.headers.map(\.value) == ["val", "raw", "raw", "val", "a\u{FFFD}b\u{FFFD}", ""])
        #expect(r.attributes.isEmpty)
    }

    @Test func bodyRangeIsRelativeToBuffer() throws {
        let body = (0..<300).map { UInt8($0 & 0xff) }
        let req = ProcessingRequest(phase: .responseBody, endOfStream: true)
        let encoded = req.encoded(body: body)
        // Decode from a sub-buffer with junk in front: ranges refer to the passed buffer.
        let padded = [UInt8](repeating: 0xAA, count: 7) + encoded
        let r = try padded.withUnsafeBytes { raw in
            try ProcessingRequest.decode(UnsafeRawBufferPointer(rebasing: raw[7...]))
        }
        #expect(r.phase == .responseBody)
        #expect(r.endOfStream)
        #expect(Array(encoded[r.body]) == body)
    }

    @Test func numberValueLittleEndianDouble() throws {
        #expect(try hex("110000000000002440").withUnsafeBytes { try ProtoValue.decode($0) } == .number(10.0))
        #expect(try hex("11000000000000f0bf").withUnsafeBytes { try ProtoValue.decode($0) } == .number(-1.0))
        #expect(try hex("").withUnsafeBytes { try ProtoValue.decode($0) } == .null)
        #expect(try hex("0800").withUnsafeBytes { try ProtoValue.decode($0) } == .null)
        // Later oneof member replaces the earlier one; a second struct_value merges.
        #expect(try hex("1a0161" + "2001").withUnsafeBytes { try ProtoValue.decode($0) } == .bool(true))
        let twoStructs = message { w in
            w.writeStruct(field: 5, ["a": .null])
            w.writeStruct(field: 5, ["b": .null])
        }
        let merged = try twoStructs.withUnsafeBytes { try ProtoValue.decode($0) }
        #expect(merged == .structValue(["a": .null, "b": .null]))
        let lists = try hex("3204" + "0a020801" + "3204" + "0a022000").withUnsafeBytes { try ProtoValue.decode($0) }
        #expect(lists == .list([.null, .bool(false)]))
    }
}
