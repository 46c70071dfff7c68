import Testing
@testable import EPPPicker

private func hashInput(_ body: String, _ kind: APIKind, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
    let bytes = Array(body.utf8)
    switch ParsedRequest.parse(body: bytes, kind: kind) {
    case .success(let r):
        return String(decoding: r.prefixHashInput(body: bytes), as: UTF8.self)
    case .failure(let e):
        Issue.record("parse failed: \(e.body)", sourceLocation: sourceLocation)
        return nil
    }
}

@Suite struct PrefixHashInputTests {
    @Test func completions() {
        #expect(hashInput(#"{"model":"m","prompt":"The quick brown fox"}"#, .completions) == "The quick brown fox")
        #expect(hashInput(#"{"model":"m","prompt":"a\n\"b\"\u00e9\ud83d\ude00 <&>"}"#, .completions) == "a\n\"b\"é😀 <&>")
        #expect(hashInput(#"{"model":"m","prompt":["one","two","three"]}"#, .completions) == "one two three")
        #expect(hashInput(#"{"model":"m","prompt":["one",""]}"#, .completions) == "one ")
        #expect(hashInput(#"{"model":"m","prompt":[1,2,3]}"#, .completions) == "")
        #expect(hashInput(#"{"model":"m","prompt":[[1,2],[3]]}"#, .completions) == "")
    }

    @Test func completionsTestVectorText() throws {
        // kv-index.md §1.5 input text: first 150 bytes of the sentence ×4
        let sentence = "The quick brown fox jumps over the lazy dog. "
        let text = String(String(repeating: sentence, count: 4).utf8.prefix(150))!
        let body = "{\"model\":\"m\",\"prompt\":\"\(text)\"}"
        let got = try #require(hashInput(body, .completions))
        #expect(got.utf8.count == 150)
        #expect(got.hasSuffix("y dog. The quick brown"))
    }

    // kv-index.md §1.5 chat vector 1 (163 bytes).
    @Test func chatStringContent() throws {
        let body = #"{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Compare <b>R&D</b> spend in 2025 vs 2026, please."}]}"#
        let expected = #"[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Compare \u003cb\u003eR\u0026D\u003c/b\u003e spend in 2025 vs 2026, please."}]"#
        let got = try #require(hashInput(body, .chatCompletions))
        #expect(got == expected)
        #expect(got.utf8.count == 163)
    }

    // kv-index.md §1.5 chat vector 2 (241 bytes).
    @Test func chatArrayContent() throws {
        let body = #"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"Describe this image in detail, please."},{"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"high"}}]}]}"#
        let expected = #"[{"role":"user","content":[{"type":"text","text":"Describe this image in detail, please.","image_url":{},"input_audio":{},"video_url":{}},{"type":"image_url","image_url":{"url":"https://example.com/a.png"},"input_audio":{},"video_url":{}}]}]"#
        let got = try #require(hashInput(body, .chatCompletions))
        #expect(got == expected)
        #expect(got.utf8.count == 241)
    }

    @Test func chatEdgeCases() {
        // key order in the input doesn't matter, whitespace is dropped, extra fields dropped
        #expect(hashInput(#"{"model":"m","messages":[ { "content" : "hi" , "name":"bob", "role" : "user" } ]}"#, .chatCompletions)
                    == #"[{"role":"user","content":"hi"}]"#)
        // empty role omitted, null/empty content => ""
        #expect(hashInput(#"{"model":"m","messages":[{"role":"","content":null},{"content":""},null,{}]}"#, .chatCompletions)
                    == #"[{"content":""},{"content":""},{"content":""},{"content":""}]"#)
        // escapes: Go short forms, \u00xx for other controls, \u2028/\u2029, / and non-ASCII raw
        #expect(hashInput(#"{"model":"m","messages":[{"role":"user","content":"a\/b\u0001\b\f\n\r\t\u2028\u2029é\u007f"}]}"#, .chatCompletions)
                    == "[{\"role\":\"user\",\"content\":\"a/b\\u0001\\b\\f\\n\\r\\t\\u2028\\u2029é\u{7f}\"}]")
        // blocks: audio and video, empty array content, null blocks
        #expect(hashInput(#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"format":"wav","data":"AAA"}},{"type":"video_url","video_url":{"url":"v"}},null,{"text":"t"}]},{"role":"assistant","content":[]}]}"#, .chatCompletions)
                    == #"[{"role":"user","content":[{"type":"input_audio","image_url":{},"input_audio":{"data":"AAA","format":"wav"},"video_url":{}},{"type":"video_url","image_url":{},"input_audio":{},"video_url":{"url":"v"}},{"type":"","image_url":{},"input_audio":{},"video_url":{}},{"type":"","text":"t","image_url":{},"input_audio":{},"video_url":{}}]},{"role":"assistant","content":[]}]"#)
        #expect(hashInput(#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"format":"wav"}}]}]}"#, .chatCompletions)
                    == #"[{"role":"user","content":[{"type":"input_audio","image_url":{},"input_audio":{"format":"wav"},"video_url":{}}]}]"#)
    }

    @Test func responses() {
        #expect(hashInput(#"{"model":"m","input":"hi"}"#, .responses) == #"[{"input":"hi"}]"#)
        #expect(hashInput(#"{"model":"m","input":"hi","instructions":null,"tools":null}"#, .responses) == #"[{"input":"hi"}]"#)
        #expect(hashInput(#"{"model":"m","input":[{"role":"user","content":"x<y"}],"instructions":"Be brief","tools":[{"type":"function","name":"f","b":1.50,"a":1e2,"c":[true,false,null],"d":{}}]}"#, .responses)
                    == #"[{"instructions":"Be brief"},{"tools":[{"a":100,"b":1.5,"c":[true,false,null],"d":{},"name":"f","type":"function"}]},{"input":[{"content":"x\u003cy","role":"user"}]}]"#)
        // duplicate keys: last wins; keys sorted bytewise (uppercase before lowercase)
        #expect(hashInput(#"{"model":"m","input":{"b":1,"a":2,"b":3,"B":0,"é":1,"z":2}}"#, .responses)
                    == #"[{"input":{"B":0,"a":2,"b":3,"z":2,"é":1}}]"#)
    }

    @Test func goFloatFormatting() {
        func fmt(_ d: Double) -> String {
            var out: [UInt8] = []
            appendGoFloat(d, to: &out)
            return String(decoding: out, as: UTF8.self)
        }
        #expect(fmt(0) == "0")
        #expect(fmt(-0.0) == "-0")
        #expect(fmt(1) == "1")
        #expect(fmt(100) == "100")
        #expect(fmt(1.5) == "1.5")
        #expect(fmt(-3.25) == "-3.25")
        #expect(fmt(0.1) == "0.1")
        #expect(fmt(0.000001) == "0.000001")
        #expect(fmt(0.0000001) == "1e-7")
        #expect(fmt(1.5e-10) == "1.5e-10")
        #expect(fmt(1e20) == "100000000000000000000")
        #expect(fmt(1e21) == "1e+21")
        #expect(fmt(1.2345e22) == "1.2345e+22")
        #expect(fmt(Double("123456789012345678")!) == "123456789012345680")
        #expect(fmt(Double("12345678901234567890")!) == "12345678901234567000")
        #expect(fmt(1.5e300) == "1.5e+300")
        #expect(fmt(Double.leastNonzeroMagnitude) == "5e-324")
        #expect(fmt(1.7976931348623157e308) == "1.7976931348623157e+308")
        #expect(fmt(0.30000000000000004) == "0.30000000000000004")
        #expect(fmt(123.456) == "123.456")
        #expect(fmt(1e16) == "10000000000000000")
    }

    @Test func genericNumbers() {
        #expect(hashInput(#"{"model":"m","input":[0,-0,1.0,1e2,1E-7,12345678901234567890,9007199254740993,-5,0.5e1]}"#, .responses)
                    == #"[{"input":[0,-0,1,100,1e-7,12345678901234567000,9007199254740992,-5,5]}]"#)
    }

    @Test func conversations() {
        #expect(hashInput(#"{"model":"m","items":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}],"id":"x"}]}"#, .conversations)
                    == #"[{"type":"message","role":"user","content":[{"text":"hi","type":"input_text"}]}]"#)
        #expect(hashInput(#"{"model":"m","items":[{"role":"user","content":"a&b"},{"type":"","content":null},null,{"content":""}]}"#, .conversations)
                    == #"[{"role":"user","content":"a\u0026b"},{},{},{"content":""}]"#)
    }

    @Test func embeddings() {
        #expect(hashInput(#"{"model":"m","input":"hello <world>"}"#, .embeddings)
                    == #"{"Raw":"hello \u003cworld\u003e","Strings":null,"TokenIDs":null}"#)
        #expect(hashInput(#"{"model":"m","input":["a","b"]}"#, .embeddings) == #"{"Raw":"","Strings":["a","b"],"TokenIDs":null}"#)
        #expect(hashInput(#"{"model":"m","input":[1, 2 ,3]}"#, .embeddings) == #"{"Raw":"","Strings":null,"TokenIDs":[1,2,3]}"#)
        #expect(hashInput(#"{"model":"m","input":[]}"#, .embeddings) == #"{"Raw":"","Strings":[],"TokenIDs":null}"#)
    }

    @Test func wrongBodyGivesEmpty() throws {
        let bytes = Array(#"{"model":"m","prompt":"abc"}"#.utf8)
        let r = try ParsedRequest.parse(body: bytes, kind: .completions).get()
        #expect(r.prefixHashInput(body: Array(bytes.dropLast())) == [])
    }
}

@Suite struct PrefixHashInputLimitTests {
    @Test func limitGivesExactPrefix() throws {
        let bodies: [(String, APIKind)] = [
            (#"{"model":"m","prompt":"abc\u00e9\"def\"<g>\n\ud83d\ude00 tail text here"}"#, .completions),
            (#"{"model":"m","prompt":["one","tw\u00f6","three"]}"#, .completions),
            (#"{"model":"m","messages":[{"role":"system","content":"You are <b>helpful</b>."},{"role":"user","content":[{"type":"text","text":"x\u2028y"},{"type":"image_url","image_url":{"url":"u"}}]},null]}"#, .chatCompletions),
            (#"{"model":"m","input":[{"b":[1,2.5,{"z":"q&"}],"a":"\u00e9"}],"instructions":"be","tools":[{"t":1}]}"#, .responses),
            (#"{"model":"m","items":[{"type":"message","role":"user","content":{"k":"v","a":[true]}},{"role":"assistant","content":"ok"}]}"#, .conversations),
            (#"{"model":"m","input":["a<b","c"]}"#, .embeddings),
            (#"{"model":"m","input":[10,20,30]}"#, .embeddings),
        ]
        for (body, kind) in bodies {
            let bytes = Array(body.utf8)
            let r = try ParsedRequest.parse(body: bytes, kind: kind).get()
            let full = r.prefixHashInput(body: bytes)
            #expect(!full.isEmpty)
            for k in 0...(full.count + 2) {
                #expect(r.prefixHashInput(body: bytes, maxBytes: k) == Array(full.prefix(k)), "\(kind) limit \(k)")
            }
        }
    }
}
