import Testing
@testable import EPPPicker

private func parse(_ s: String, _ kind: APIKind = .completions, maxDepth: Int = 128) -> Result<ParsedRequest, RequestError> {
    ParsedRequest.parse(body: Array(s.utf8), kind: kind, maxDepth: maxDepth)
}

private func ok(_ s: String, _ kind: APIKind = .completions, sourceLocation: SourceLocation = #_sourceLocation) -> ParsedRequest? {
    switch parse(s, kind) {
    case .success(let r): return r
    case .failure(let e):
        Issue.record("unexpected failure: \(e.body)", sourceLocation: sourceLocation)
        return nil
    }
}

private func err(_ s: String, _ kind: APIKind = .completions, maxDepth: Int = 128,
                 sourceLocation: SourceLocation = #_sourceLocation) -> RequestError? {
    switch parse(s, kind, maxDepth: maxDepth) {
    case .success: Issue.record("expected failure for \(s)", sourceLocation: sourceLocation); return nil
    case .failure(let e): return e
    }
}

@Suite struct APIKindTests {
    @Test(arguments: [
        ("/v1/completions", APIKind.completions),
        ("/v1/chat/completions", .chatCompletions),
        ("/v1/responses", .responses),
        ("/v1/embeddings", .embeddings),
        ("/v1/conversations", .conversations),
        ("/openai/v1/chat/completions", .chatCompletions),
        ("/chat/completions", .chatCompletions),
        ("/v1/chat/completions?api-version=2024-01-01", .chatCompletions),
        ("/v1/embeddings?x=/v1/chat/completions", .embeddings),
        ("/v1/responses?stream=true#frag", .responses),
        ("/v1/conversations?a=b", .conversations),
        ("/v1/completions?", .completions),
        ("/v1/models", .completions),
        ("/", .completions),
        ("", .completions),
        ("/v1/responses/abc", .completions),
        ("/v1/chat/completionsX", .completions),
    ])
    func suffixes(path: String, kind: APIKind) {
        #expect(APIKind.from(path: path) == kind)
    }

    @Test func pathSourceOrder() {
        #expect(APIKind.requestPath(header: { _ in nil }) == "/v1/completions")
        let h1 = [":path": "/v1/embeddings", "x-original-path": "/v1/responses", "x-forwarded-path": "/v1/chat/completions"]
        #expect(APIKind.from(headers: h1) == .embeddings)
        let h2 = [":path": "", "x-original-path": "/v1/responses", "x-forwarded-path": "/v1/chat/completions"]
        #expect(APIKind.from(headers: h2) == .responses)
        let h3 = ["x-forwarded-path": "/v1/chat/completions"]
        #expect(APIKind.from(headers: h3) == .chatCompletions)
        #expect(APIKind.from(headers: [:]) == .completions)
    }
}

@Suite struct RequestErrorTests {
    @Test func bodiesAndStatuses() {
        #expect(RequestError.modelNotFound.body == "inference error: BadRequest - model not found in request body")
        #expect(RequestError.modelNotFound.httpStatus == 400)
        #expect(RequestError.notJSON("x").body == "inference error: BadRequest - error unmarshaling request bodyMap: x")
        #expect(RequestError.serviceUnavailable.body
                    == "inference error: ServiceUnavailable - failed to find endpoint candidates for serving the request")
        #expect(RequestError.serviceUnavailable.httpStatus == 503)
        #expect(RequestError.noPodsInDatastore.body == "inference error: Internal - no pods available in datastore")
        #expect(RequestError.noPodsInDatastore.httpStatus == 500)
        #expect(RequestError.tooLarge.httpStatus == 413)
        #expect(RequestError.tooLarge.body == "inference error: BadRequest - request body too large")
        #expect(RequestError.shed.httpStatus == 429)
        #expect(RequestError.shed.body == "inference error: ResourceExhausted - system saturated, sheddable request dropped")
        #expect(RequestError.schedulerFailed("no endpoints left").httpStatus == 429)
        #expect(RequestError.schedulerFailed("no endpoints left").body
                    == "inference error: ResourceExhausted - failed to find target endpoint: no endpoints left")
        #expect(RequestError.admissionDenied.body == "inference error: Internal - request cannot be admitted")
        #expect(RequestError.admissionDenied.httpStatus == 500)
        #expect(RequestError.grpcPayloadParse().body
                    == "inference error: BadRequest - parsing gRPC payload for Generate: not able to parse payload")
        #expect(RequestError.unsupportedGRPCPath("unsupportedMethod").body
                    == "inference error: BadRequest - unsupported gRPC path: unsupportedMethod")
        #expect(RequestError.queueTimeout("ttl").httpStatus == 503)
        #expect(RequestError.queueTimeout("ttl").body == "inference error: ServiceUnavailable - request timed out in queue: ttl")
        #expect(RequestError.clientDisconnected("ctx").body == "inference error: ServiceUnavailable - client disconnected: ctx")
        #expect(RequestError.flowControlCapacity("queue full").httpStatus == 429)
        #expect(RequestError.evictedByFlowControl.body == "request evicted by flow control")
        #expect(RequestError.evictedByFlowControl.httpStatus == 429)
    }

    @Test func codeMapping() {
        let table = ["BadRequest": 400, "Unauthorized": 401, "Forbidden": 403, "NotFound": 404,
                     "ResourceExhausted": 429, "Internal": 500, "ServiceUnavailable": 503, "Weird": 500]
        for (code, status) in table {
            #expect(RequestError.httpStatus(forCode: code) == status)
            #expect(RequestError(code: code, message: "m").body == "inference error: \(code) - m")
        }
    }
}

@Suite struct ParsedRequestValidationTests {
    // Golden 5
    @Test func invalidJSONBody() throws {
        let e = try #require(err("no healthy upstream"))
        #expect(e.httpStatus == 400)
        #expect(e.code == "BadRequest")
        #expect(e.body.hasPrefix("inference error: BadRequest - error unmarshaling request bodyMap: "))
        #expect(e.message == "error unmarshaling request bodyMap: invalid character 'o' in literal null (expecting 'u') at offset 1")
    }

    // Golden 10: passthrough body is not JSON — parse fails cleanly, caller forwards bytes.
    @Test func passthroughBodyFailsCleanly() throws {
        let e = try #require(err("passthrough-parser"))
        #expect(e.message.hasPrefix("error unmarshaling request bodyMap: invalid character 'p' looking for beginning of value"))
    }

    // Golden 6
    @Test func missingModel() throws {
        let e = try #require(err(#"{"prompt":"hello world"}"#))
        #expect(e.body == "inference error: BadRequest - model not found in request body")
        #expect(e.httpStatus == 400)
        let e2 = try #require(err(#"{"prompt":"hello world","model":7}"#))
        #expect(e2.message == "model not found in request body")
        let e3 = try #require(err(#"{"prompt":"hello world","model":null}"#))
        #expect(e3.message == "model not found in request body")
        // last duplicate wins (map semantics)
        let e4 = try #require(err(#"{"model":"a","prompt":"x","model":1}"#))
        #expect(e4.message == "model not found in request body")
    }

    @Test func notAnObject() throws {
        for body in ["[1,2]", "\"str\"", "42", "true", "null"] {
            let e = try #require(err(body))
            #expect(e.message.hasPrefix("error unmarshaling request bodyMap: expected a JSON object, found "))
        }
        let e = try #require(err(""))
        #expect(e.message == "error unmarshaling request bodyMap: unexpected end of JSON input at offset 0")
        let e2 = try #require(err("   "))
        #expect(e2.message == "error unmarshaling request bodyMap: unexpected end of JSON input at offset 3")
    }

    @Test func perKindRequiredFields() throws {
        let m = #""model":"m""#
        // completions
        for body in ["{\(m)}", "{\(m),\"prompt\":null}", "{\(m),\"prompt\":\"\"}", "{\(m),\"prompt\":[]}",
                     "{\(m),\"prompt\":5}", "{\(m),\"prompt\":{}}", "{\(m),\"prompt\":[\"a\",1]}",
                     "{\(m),\"prompt\":\"x\",\"cache_salt\":5}"] {
            let e = try #require(err(body, .completions))
            #expect(e.message == "invalid completions request: must have prompt field", "\(body)")
            #expect(e.httpStatus == 400)
        }
        // chat
        for body in ["{\(m)}", "{\(m),\"messages\":null}", "{\(m),\"messages\":\"hi\"}", "{\(m),\"messages\":{}}",
                     "{\(m),\"messages\":[1]}", "{\(m),\"messages\":[{\"role\":1,\"content\":\"x\"}]}",
                     "{\(m),\"messages\":[{\"role\":\"user\",\"content\":{}}]}",
                     "{\(m),\"messages\":[{\"role\":\"user\",\"content\":5}]}",
                     "{\(m),\"messages\":[{\"role\":\"user\",\"content\":[\"text\"]}]}",
                     "{\(m),\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":5}]}]}",
                     "{\(m),\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"http://x\"}]}]}",
                     "{\(m),\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}",
                     "{\(m),\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"cache_salt\":[]}",
                     "{\(m),\"messages\":[1],\"messages\":[]}"] {
            let e = try #require(err(body, .chatCompletions))
            #expect(e.message == "invalid chat completions request: must have valid messages field", "\(body)")
        }
        let empty = try #require(err("{\(m),\"messages\":[]}", .chatCompletions))
        #expect(empty.message == "chat-completions request must have at least one message")
        #expect(empty.body == "inference error: BadRequest - chat-completions request must have at least one message")
        // responses
        for body in ["{\(m)}", "{\(m),\"input\":null}"] {
            let e = try #require(err(body, .responses))
            #expect(e.message == "invalid responses request: must have input field")
        }
        // embeddings
        for body in ["{\(m)}", "{\(m),\"input\":null}", "{\(m),\"input\":5}", "{\(m),\"input\":{}}", "{\(m),\"input\":[\"a\",2]}"] {
            let e = try #require(err(body, .embeddings))
            #expect(e.message == "invalid embeddings request: must have input field", "\(body)")
        }
        // conversations
        for body in ["{\(m)}", "{\(m),\"items\":null}", "{\(m),\"items\":[]}", "{\(m),\"items\":\"x\"}",
                     "{\(m),\"items\":[5]}", "{\(m),\"items\":[{\"type\":1}]}"] {
            let e = try #require(err(body, .conversations))
            #expect(e.message == "invalid conversations request: must have items field", "\(body)")
        }
        // kind error takes precedence over missing model (reference order)
        let both = try #require(err("{}", .chatCompletions))
        #expect(both.message == "invalid chat completions request: must have valid messages field")
    }

    @Test func acceptedShapes() {
        let m = #""model":"m""#
        #expect(ok("{\(m),\"prompt\":\"x\"}") != nil)
        #expect(ok("{\(m),\"prompt\":[\"a\",\"b\"]}") != nil)
        #expect(ok("{\(m),\"prompt\":[1,2,3]}") != nil)
        #expect(ok("{\(m),\"prompt\":[[1,2],[3]]}") != nil)
        #expect(ok("{\(m),\"messages\":[null]}", .chatCompletions) != nil)
        #expect(ok("{\(m),\"messages\":[{}]}", .chatCompletions) != nil)
        #expect(ok("{\(m),\"messages\":[{\"role\":null,\"content\":null,\"name\":5,\"tool_calls\":[]}]}", .chatCompletions) != nil)
        #expect(ok("{\(m),\"messages\":[{\"role\":\"user\",\"content\":[null,{\"type\":\"text\",\"text\":null,\"image_url\":null}]}],\"tools\":null}",
                   .chatCompletions) != nil)
        #expect(ok("{\(m),\"input\":\"x\"}", .responses) != nil)
        #expect(ok("{\(m),\"input\":[{\"role\":\"user\",\"content\":\"x\"}]}", .responses) != nil)
        #expect(ok("{\(m),\"input\":5}", .responses) != nil)
        #expect(ok("{\(m),\"input\":\"x\"}", .embeddings) != nil)
        #expect(ok("{\(m),\"input\":[]}", .embeddings) != nil)
        #expect(ok("{\(m),\"input\":[1,2]}", .embeddings) != nil)
        #expect(ok("{\(m),\"items\":[null,{\"type\":\"message\",\"content\":{\"x\":1}}]}", .conversations) != nil)
    }

    @Test func extractsFields() throws {
        let body = #"""
        { "model" : "llama\u002d3\n\"q\"", "stream":true, "stream_options":{"x":[1,{"include_usage":false}],"include_usage":true},
          "cache_salt":"s\u00e9\ud83d\ude00", "max_tokens": 100, "max_completion_tokens":-7, "temperature":0.5,
          "messages":[{"role":"user","content":"hi"}], "prompt":null, "tools":[{"type":"function"}], "instructions":"be",
          "input":"in", "items":[{}], "nested":{"model":"no","stream":false} }
        """#
        let r = try #require(ok(body, .chatCompletions))
        #expect(r.kind == .chatCompletions)
        #expect(r.model == "llama-3\n\"q\"")
        let bytes = Array(body.utf8)
        #expect(String(decoding: bytes[r.modelRange], as: UTF8.self) == #""llama\u002d3\n\"q\"""#)
        #expect(r.stream)
        #expect(r.includeUsage)
        #expect(r.cacheSalt == "sé😀")
        #expect(r.maxTokens == 100)
        #expect(r.maxCompletionTokens == -7)
        #expect(r.promptRange == nil)
        #expect(String(decoding: bytes[r.messagesRange!], as: UTF8.self) == #"[{"role":"user","content":"hi"}]"#)
        #expect(String(decoding: bytes[r.toolsRange!], as: UTF8.self) == #"[{"type":"function"}]"#)
        #expect(String(decoding: bytes[r.instructionsRange!], as: UTF8.self) == #""be""#)
        #expect(String(decoding: bytes[r.inputRange!], as: UTF8.self) == #""in""#)
        #expect(String(decoding: bytes[r.itemsRange!], as: UTF8.self) == "[{}]")
        #expect(r.bodyCount == bytes.count)
    }

    @Test func defaultsAndOddTypes() throws {
        let r = try #require(ok(#"{"model":"m","prompt":"p","stream":"true","stream_options":{"include_usage":1},"max_tokens":1.5,"cache_salt":null}"#))
        #expect(!r.stream)
        #expect(!r.includeUsage)
        #expect(r.maxTokens == nil)
        #expect(r.cacheSalt == nil)
        let r2 = try #require(ok(#"{"model":"m","prompt":"p","max_tokens":99999999999999999999999}"#))
        #expect(r2.maxTokens == nil)
        let r3 = try #require(ok(#"{"model":"","prompt":"p"}"#))
        #expect(r3.model == "")
        let r4 = try #require(ok(#"{"m\u006fdel":"esc","prompt":"p"}"#))
        #expect(r4.model == "esc")
        let r5 = try #require(ok(#"{"stream":true,"model":"m","prompt":"p","stream":false}"#))
        #expect(!r5.stream)
    }

    // Golden 4: body split across chunks, then model rewrite.
    @Test func bodySplitAcrossChunksAndRewrite() throws {
        let chunks = [#"{"max_tokens":100,"model":"sql-lo"#, #"ra-sheddable","prompt":"test6","temperature":0}"#]
        let body = Array(chunks.joined().utf8)
        let r = try ParsedRequest.parse(body: body, kind: .completions).get()
        #expect(r.model == "sql-lora-sheddable")
        #expect(r.needsModelRewrite(to: "sql-lora-1fdg3"))
        #expect(!r.needsModelRewrite(to: "sql-lora-sheddable"))
        let out = r.bodyWithModel("sql-lora-1fdg3", body: body)
        #expect(String(decoding: out, as: UTF8.self) == #"{"max_tokens":100,"model":"sql-lora-1fdg3","prompt":"test6","temperature":0}"#)
    }

    // Golden 1 / 9: rewrite keeps every other byte (no re-marshal).
    @Test func spliceKeepsOtherBytes() throws {
        let text = "{ \"prompt\" : \"t\\u00e9st<&>\",\n\t\"max_tokens\":100, \"temperature\":0.0,\"big\":12345678901234567890,\n\"model\" :  \"model-to-be-rewritten\" , \"z\":[1,2 ,3] }  "
        let body = Array(text.utf8)
        let r = try ParsedRequest.parse(body: body, kind: .completions).get()
        let out = r.bodyWithModel("rewritten-model", body: body)
        let prefix = Array(body[..<r.modelRange.lowerBound])
        let suffix = Array(body[r.modelRange.upperBound...])
        #expect(Array(out.prefix(prefix.count)) == prefix)
        #expect(Array(out.suffix(suffix.count)) == suffix)
        #expect(String(decoding: out[prefix.count..<(out.count - suffix.count)], as: UTF8.self) == #""rewritten-model""#)
        // re-parse: model changed, everything else equal
        let r2 = try ParsedRequest.parse(body: out, kind: .completions).get()
        #expect(r2.model == "rewritten-model")
        // names needing escapes are escaped
        let out2 = r.bodyWithModel("a\"b\\c\nd\u{1}é", body: body)
        let r3 = try ParsedRequest.parse(body: out2, kind: .completions).get()
        #expect(r3.model == "a\"b\\c\nd\u{1}é")
        #expect(String(decoding: out2[r3.modelRange], as: UTF8.self) == #""a\"b\\c\nd\u0001é""#)
    }

    @Test func depthLimit() throws {
        let deep = "{\"model\":\"m\",\"prompt\":\"p\",\"x\":" + String(repeating: "[", count: 127) + String(repeating: "]", count: 127) + "}"
        #expect(ok(deep) != nil)  // object (1) + 127 arrays = 128 levels
        let tooDeep = "{\"model\":\"m\",\"prompt\":\"p\",\"x\":" + String(repeating: "[", count: 128) + String(repeating: "]", count: 128) + "}"
        let e = try #require(err(tooDeep))
        #expect(e.message.hasPrefix("error unmarshaling request bodyMap: exceeded max nesting depth 128 at offset"))
        let e2 = try #require(err(#"{"model":"m","prompt":"p","x":[[[]]]}"#, maxDepth: 3))
        #expect(e2.message.contains("exceeded max nesting depth 3"))
        // absurd nesting never crashes
        let huge = String(repeating: "[", count: 200_000)
        #expect(err(huge) != nil)
        let hugeObj = "{\"a\":" + String(repeating: "{\"a\":", count: 100_000)
        #expect(err(hugeObj, maxDepth: 1_000_000) != nil)
    }
}

@Suite struct JSONScannerTests {
    private func message(_ s: String) -> String? {
        if case .failure(let e) = parse(s) {
            let p = "error unmarshaling request bodyMap: "
            return e.message.hasPrefix(p) ? String(e.message.dropFirst(p.count)) : e.message
        }
        return nil
    }

    @Test func syntaxErrors() {
        let cases: [(String, String)] = [
            (#"{"model":"m","prompt":"p"} x"#, "invalid character 'x' after top-level value at offset 27"),
            (#"{"model":"m","prompt":"p"}{}"#, "invalid character '{' after top-level value at offset 26"),
            (#"{"model":"m","prompt":"p",}"#, "invalid character '}' looking for beginning of object key string at offset 26"),
            (#"{"model" "m"}"#, "invalid character '\"' after object key at offset 9"),
            (#"{"model":"m" "prompt":1}"#, "invalid character '\"' after object key:value pair at offset 13"),
            (#"{"a":[1 2]}"#, "invalid character '2' after array element at offset 8"),
            (#"{"a":[1,]}"#, "invalid character ']' looking for beginning of value at offset 8"),
            (#"{"a":tru}"#, "invalid character '}' in literal true (expecting 'e') at offset 8"),
            (#"{"a":nul}"#, "invalid character '}' in literal null (expecting 'l') at offset 8"),
            (#"{"a":fals}"#, "invalid character '}' in literal false (expecting 'e') at offset 9"),
            (#"{"a":01}"#, "invalid character '1' after object key:value pair at offset 6"),
            (#"{"a":-}"#, "invalid character '}' in numeric literal at offset 6"),
            (#"{"a":1.}"#, "invalid character '}' after decimal point in numeric literal at offset 7"),
            (#"{"a":1e}"#, "invalid character '}' in exponent of numeric literal at offset 7"),
            (#"{"a":1e+}"#, "invalid character '}' in exponent of numeric literal at offset 8"),
            (#"{"a":+1}"#, "invalid character '+' looking for beginning of value at offset 5"),
            (#"{"a":.5}"#, "invalid character '.' looking for beginning of value at offset 5"),
            (#"{"a":"\x"}"#, "invalid character 'x' in string escape code at offset 7"),
            (#"{"a":"\u12G4"}"#, "invalid character 'G' in \\u hexadecimal character escape at offset 10"),
            ("{\"a\":\"x\ny\"}", "invalid character '\\n' in string literal at offset 7"),
            ("{\"a\":\"\u{1}\"}", "invalid character '\\x01' in string literal at offset 6"),
            (#"{'a':1}"#, "invalid character '\\'' looking for beginning of object key string at offset 1"),
            (#"{"a":NaN}"#, "invalid character 'N' looking for beginning of value at offset 5"),
            (#"{"a":Infinity}"#, "invalid character 'I' looking for beginning of value at offset 5"),
            ("\u{FEFF}{}", "invalid character '\\xef' looking for beginning of value at offset 0"),
        ]
        for (input, expected) in cases {
            #expect(message(input) == expected, "\(input)")
        }
    }

    @Test func truncated() {
        let full = #"{"model":"m\u00e9","prompt":"p","y":["a",{"b":[1.5e3,true,false,null]}],"x":-0.1}"#
        let bytes = Array(full.utf8)
        #expect(ok(full) != nil)
        for n in 0..<bytes.count {
            let r = ParsedRequest.parse(body: Array(bytes[0..<n]), kind: .completions)
            guard case .failure(let e) = r else {
                Issue.record("prefix of length \(n) accepted")
                continue
            }
            #expect(e.message.contains("unexpected end of JSON input at offset \(n)") || e.message.contains("invalid character"),
                    "\(n): \(e.message)")
        }
    }

    @Test func whitespaceNumbersEscapes() throws {
        let body = " \t\r\n{ \"model\" :\r\n\"m\" , \"prompt\":\"p\", \"n\":[0,-0,1.0e-10,2E+5,-3.25e0,12345678901234567890123], \"s\":\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0041 \\ud83d\\ude00\" } \n\t "
        #expect(ok(body) != nil)
    }

    @Test func stringDecoding() {
        func decode(_ json: String) -> String {
            let bytes = Array(json.utf8)
            return bytes.withUnsafeBytes { raw in
                var c = JSONCursor(raw)
                let tok = try! c.scanString()
                return c.string(tok)
            }
        }
        #expect(decode(#""plain""#) == "plain")
        #expect(decode(#""a\"b\\c\/d\b\f\n\r\t""#) == "a\"b\\c/d\u{8}\u{c}\n\r\t")
        #expect(decode(#""\u00e9\u4e2d""#) == "é中")
        #expect(decode(#""\ud83d\ude00""#) == "😀")
        #expect(decode(#""\uD83D\uDE00x""#) == "😀x")
        #expect(decode(#""\ud83dx""#) == "\u{FFFD}x")          // lone high surrogate
        #expect(decode(#""\ude00""#) == "\u{FFFD}")            // lone low surrogate
        #expect(decode(#""\ud83d\u0041""#) == "\u{FFFD}A")     // high + non-low
        #expect(decode(#""\ud83d\ud83d\ude00""#) == "\u{FFFD}😀")
        #expect(decode("\"é😀\"") == "é😀")
        // invalid UTF-8 bytes become U+FFFD one per byte (Go)
        let raw: [UInt8] = [0x22, 0x61, 0xFF, 0xC3, 0x28, 0xED, 0xA0, 0x80, 0x22]
        let s = raw.withUnsafeBytes { r -> String in
            var c = JSONCursor(r)
            let tok = try! c.scanString()
            return c.string(tok)
        }
        #expect(s == "a\u{FFFD}\u{FFFD}(\u{FFFD}\u{FFFD}\u{FFFD}")
    }

    @Test func randomGarbageNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("{}[]\":,0123456789-+.eEtrufalsn \\u\n\tabc".utf8)
        for _ in 0..<3000 {
            let n = Int.random(in: 0..<40, using: &rng)
            let bytes = (0..<n).map { _ in alphabet.randomElement(using: &rng)! }
            for kind in APIKind.allCases {
                if case .success(let r) = ParsedRequest.parse(body: bytes, kind: kind) {
                    _ = r.prefixHashInput(body: bytes)
                    _ = r.bodyWithModel("x", body: bytes)
                }
            }
        }
        // structured mutations of a valid chat body
        let base = Array(#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi\u00e9"}]}],"stream":true}"#.utf8)
        for i in 0..<base.count {
            for rep in [UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "{"), UInt8(ascii: "]"), 0x00, 0xFF] {
                var b = base
                b[i] = rep
                if case .success(let r) = ParsedRequest.parse(body: b, kind: .chatCompletions) {
                    _ = r.prefixHashInput(body: b)
                }
                _ = ParsedRequest.parse(body: Array(b[0..<i]), kind: .chatCompletions)
            }
        }
    }
}
