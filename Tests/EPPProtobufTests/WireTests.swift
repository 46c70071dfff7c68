import EPPProtobuf
import Testing

@Suite("WireReader / WireWriter primitives")
struct WireTests {
    @Test func varintRoundTripAndSizes() throws {
        let values: [UInt64] = [0, 1, 127, 128, 300, 16383, 16384, 1 << 21, (1 << 28) - 1, 1 << 35,
                                UInt64(Int64.max), UInt64.max, UInt64(bitPattern: -1), UInt64(bitPattern: Int64.min)]
        for v in values {
            var w = WireWriter()
            w.writeVarint(v)
            #expect(w.bytes.count == WireWriter.varintSize(v))
            let decoded = try w.bytes.withUnsafeBytes { raw in
                var r = WireReader(raw)
                let x = try r.readVarint()
                #expect(r.isAtEnd)
                return x
            }
            #expect(decoded == v)
        }
        #expect(WireWriter.varintSize(UInt64.max) == 10)
        var neg = WireWriter()
        neg.writeInt64(field: 1, -1)
        #expect(hexString(neg.bytes) == "08ffffffffffffffffff01")
    }

    @Test func readerPrimitives() throws {
        let input = hex("08 96 01" + "11 0000000000002440" + "1a 03 616263" + "25 01000000" + "2801")
        try input.withUnsafeBytes { raw in
            var r = WireReader(raw)
            var tag = try #require(try r.readTag())
            #expect(tag.field == 1 && tag.wireType == 0)
            #expect(try r.readVarint() == 150)
            tag = try #require(try r.readTag())
            #expect(tag.field == 2 && tag.wireType == 1)
            #expect(try r.readDouble() == 10.0)
            tag = try #require(try r.readTag())
            #expect(tag.field == 3 && tag.wireType == 2)
            let range = try r.readLengthDelimited()
            #expect(range == 14..<17)
            #expect(r.string(in: range) == "abc")
            tag = try #require(try r.readTag())
            #expect(tag.field == 4 && tag.wireType == 5)
            #expect(try r.readFixed32() == 1)
            tag = try #require(try r.readTag())
            #expect(tag.field == 5)
            #expect(try r.readBool())
            #expect(try r.readTag() == nil)
            #expect(try r.readTag() == nil)
        }
    }

    @Test func skipAllWireTypes() throws {
        let input = hex("0896 01" + "110102030405060708" + "1a03616263" + "2501020304")
        try input.withUnsafeBytes { raw in
            var r = WireReader(raw)
            var n = 0
            while let (field, wt) = try r.readTag() {
                try r.skip(wireType: wt, field: field)
                n += 1
            }
            #expect(n == 4)
        }
        for wt in [3, 4, 6, 7] {
            let error = try #require(throws: ProtoDecodingError.self) {
                try [UInt8](repeating: 0, count: 8).withUnsafeBytes { raw in
                    var r = WireReader(raw)
                    try r.skip(wireType: wt, field: 7)
                }
            }
            #expect(error.kind == .unsupportedWireType(wt))
            if wt == 3 { #expect(error.description == "wire type 3 (groups) not supported at field 7 (offset 0)") }
        }
    }

    @Test func errorMessages() throws {
        let e1 = try #require(throws: ProtoDecodingError.self) {
            try hex("0a0b0c80").withUnsafeBytes { raw in
                var r = WireReader(raw)
                r = r.subReader(3..<4)
                _ = try r.readVarint()
            }
        }
        #expect(e1.description == "truncated varint at offset 3")
        let e2 = try #require(throws: ProtoDecodingError.self) { _ = try ProcessingRequest.decode(hex("1205")) }
        #expect(e2.description.contains("length 5 exceeds"))
    }

    @Test func subReaderKeepsAbsoluteOffsets() throws {
        let input = hex("0a05" + "1203616263" + "10")
        try input.withUnsafeBytes { raw in
            var r = WireReader(raw)
            _ = try r.readTag()
            let outer = try r.readLengthDelimited()
            #expect(outer == 2..<7)
            var sub = r.subReader(outer)
            _ = try sub.readTag()
            let inner = try sub.readLengthDelimited()
            #expect(inner == 4..<7)
            #expect(sub.isAtEnd)
            #expect(r.offset == 7)
            // A sub-reader cannot read past its end even though the buffer continues.
            var limited = r.subReader(2..<3)
            #expect(throws: ProtoDecodingError.self) { _ = try limited.readLengthDelimited() }
        }
    }

    @Test func writerDefaultsAndExplicitDefaults() {
        var w = WireWriter(reservingCapacity: 64)
        w.writeBool(field: 1, false)
        w.writeVarintField(field: 2, 0)
        w.writeString(field: 3, "")
        w.writeDouble(field: 4, 0)
        w.writeBytes(field: 5, [])
        #expect(w.bytes.isEmpty)
        w.writeBool(field: 1, false, emitDefault: true)
        w.writeString(field: 3, "", emitDefault: true)
        w.writeDouble(field: 4, -0.0)
        w.writeMessage(field: 2) { _ in }
        #expect(hexString(w.bytes) == "0800" + "1a00" + "210000000000000080" + "1200")
        var f = WireWriter()
        f.writeFixed32(0x0403_0201)
        f.writeFixed64(0x0807_0605_0403_0201)
        #expect(hexString(f.bytes) == "01020304" + "0102030405060708")
    }

    @Test(arguments: [0, 1, 125, 126, 127, 128, 129, 16380, 16381, 16382, 16383, 16384, 16385, 70000, 2_097_151, 2_097_152])
    func nestedMessageLengthPrefix(contentSize: Int) throws {
        var content = [UInt8](repeating: 0x5A, count: contentSize)
        if contentSize > 1 {
            content[0] = 1
            content[contentSize - 1] = 2
        }
        var w = WireWriter(bytes: [0xEE])
        w.writeMessage(field: 5) { inner in content.withUnsafeBytes { inner.writeRawBytes($0) } }
        var expected: [UInt8] = [0xEE, 0x2A]
        var lw = WireWriter()
        lw.writeVarint(UInt64(contentSize))
        expected += lw.bytes + content
        #expect(w.bytes == expected)
        // Minimal varint prefix.
        #expect(w.bytes.count == 2 + WireWriter.varintSize(UInt64(contentSize)) + contentSize)
    }

    @Test func deeplyNestedMessagesShiftCorrectly() throws {
        // Three levels where inner content crosses 128 at different levels.
        let payload = [UInt8](repeating: 7, count: 200)
        var w = WireWriter()
        w.writeMessage(field: 1) { a in
            a.writeMessage(field: 2) { b in
                b.writeMessage(field: 3) { c in c.writeBytes(field: 4, payload) }
                b.writeBool(field: 5, true)
            }
            a.writeString(field: 6, "x")
        }
        try w.bytes.withUnsafeBytes { raw in
            var r = WireReader(raw)
            #expect(try r.readTag()! == (1, 2))
            var a = r.subReader(try r.readLengthDelimited())
            #expect(r.isAtEnd)
            #expect(try a.readTag()! == (2, 2))
            var b = a.subReader(try a.readLengthDelimited())
            #expect(try a.readTag()! == (6, 2))
            #expect(try a.readString() == "x")
            #expect(try b.readTag()! == (3, 2))
            var c = b.subReader(try b.readLengthDelimited())
            #expect(try b.readTag()! == (5, 0))
            #expect(try b.readBool())
            #expect(try c.readTag()! == (4, 2))
            let p = try c.readLengthDelimited()
            #expect(Array(raw[p]) == payload)
        }
    }

    /// The arithmetic streamed-body encoder must equal the generic nested encoder for
    /// every size around the varint boundaries of each nesting level.
    @Test func streamedBodyMatchesGenericEncoder() throws {
        var sizes = Array(0...300)
        sizes += Array(16_360...16_400) + [61_999, 62_000, 62_001]
        for n in sizes {
            let body = [UInt8](repeating: UInt8(n & 0xff), count: n)
            for eos in [false, true] {
                for direction in [ProcessingResponse.Direction.request, .response] {
                    var fast = WireWriter()
                    ProcessingResponse.encodeStreamedBody(direction: direction, body: body, endOfStream: eos, into: &fast)
                    var generic = WireWriter()
                    generic.writeMessage(field: direction == .request ? 3 : 4) { br in
                        br.writeMessage(field: 1) { cr in
                            cr.writeMessage(field: 3) { bm in
                                bm.writeMessage(field: 3) { s in
                                    s.writeBytes(field: 1, body)
                                    s.writeBool(field: 2, eos)
                                }
                            }
                        }
                    }
                    if fast.bytes != generic.bytes {
                        Issue.record("mismatch for n=\(n) eos=\(eos) \(direction)")
                        return
                    }
                    #expect(ProcessingResponse.streamedBodyFieldSize(bodyCount: n, endOfStream: eos) == fast.bytes.count)
                }
            }
        }
    }

    @Test func streamedBody62000Chunks() throws {
        let body = (0..<62_000).map { UInt8(truncatingIfNeeded: $0) }
        var out: [UInt8] = []
        for i in 0..<3 {
            WireWriter.appendGRPCFrame(to: &out) { w in
                ProcessingResponse.encodeStreamedBody(direction: .request, body: body, endOfStream: i == 2,
                                                      dynamicMetadata: i == 2 ? ["envoy.lb": .structValue(["k": .number(1)])] : nil,
                                                      into: &w)
            }
        }
        var offset = 0
        for i in 0..<3 {
            #expect(out[offset] == 0)
            let length = Int(out[offset + 1]) << 24 | Int(out[offset + 2]) << 16 | Int(out[offset + 3]) << 8 | Int(out[offset + 4])
            let msg = Array(out[(offset + 5)..<(offset + 5 + length)])
            let decoded = try ProcessingResponse.decode(msg)
            #expect(decoded.kind == .requestBody(StreamedBodyResponse(body: body, endOfStream: i == 2)))
            #expect(decoded.dynamicMetadata == (i == 2 ? ["envoy.lb": .structValue(["k": .number(1)])] : nil))
            offset += 5 + length
        }
        #expect(offset == out.count)
    }
}
