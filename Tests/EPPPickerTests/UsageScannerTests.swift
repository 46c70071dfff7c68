import Testing
@testable import EPPPicker

private func feedAll(_ mode: UsageScanner.Mode, _ chunks: [String], maxLine: Int = 1 << 20) -> (Usage?, UsageScanner) {
    var s = UsageScanner(mode: mode, maxLineBytes: maxLine)
    for c in chunks { s.feed(Array(c.utf8)) }
    let u = s.finish()
    return (u, s)
}

/// Every split of `text` into two or three chunks gives the same result.
private func allSplits(_ mode: UsageScanner.Mode, _ text: String, expect: Usage?, sourceLocation: SourceLocation = #_sourceLocation) {
    let b = Array(text.utf8)
    for i in 0...b.count {
        var s = UsageScanner(mode: mode)
        s.feed(Array(b[0..<i]))
        s.feed(Array(b[i...]))
        #expect(s.finish() == expect, "split at \(i)", sourceLocation: sourceLocation)
    }
    // byte by byte
    var s = UsageScanner(mode: mode)
    for x in b { s.feed([x]) }
    #expect(s.finish() == expect, "byte-wise", sourceLocation: sourceLocation)
}

@Suite struct UsageScannerTests {
    // Golden 12: chunks exactly as in the reference test.
    @Test func goldenSSE() {
        let chunks = ["data: {}", "data: {\"usage\":{\"prompt_tokens\":7,\"total_tokens\":17,\"completion_tokens\":10}}\ndata: [DONE]", ""]
        let (u, _) = feedAll(.sse, chunks)
        #expect(u == Usage(promptTokens: 7, completionTokens: 10, totalTokens: 17))
    }

    // Golden 11: non-SSE JSON in two chunks.
    @Test func goldenJSON() {
        let body = #"{"id":"cmpl-1","object":"text_completion","model":"m","choices":[{"text":"hi","index":0}],"usage":{"prompt_tokens":5,"completion_tokens":10,"total_tokens":15}}"#
        allSplits(.json, body, expect: Usage(promptTokens: 5, completionTokens: 10, totalTokens: 15))
        #expect(UsageScanner.parseJSON(Array(body.utf8)) == Usage(promptTokens: 5, completionTokens: 10, totalTokens: 15))
    }

    @Test func vllmStreamWithIncludeUsage() {
        let text = """
        data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"He said \\"usage\\": \\u0041"}}]}

        data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}

        data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[],"usage":{"prompt_tokens":31,"total_tokens":41,"completion_tokens":10,"prompt_tokens_details":{"cached_tokens":16}}}

        data: [DONE]


        """
        allSplits(.sse, text, expect: Usage(promptTokens: 31, completionTokens: 10, totalTokens: 41, cachedTokens: 16))
    }

    @Test func crlfAndNoSpace() {
        let text = "event: x\r\ndata:{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\r\n\r\n"
        allSplits(.sse, text, expect: Usage(promptTokens: 1, completionTokens: 2, totalTokens: 3))
    }

    @Test func responsesCompletedEvent() {
        let text = """
        event: response.created
        data: {"type":"response.created","response":{"id":"r1","object":"response","usage":null}}

        event: response.output_text.delta
        data: {"type":"response.output_text.delta","delta":"\\ud83d\\ude00 usage"}

        event: response.completed
        data: {"type":"response.completed","response":{"id":"r1","object":"response","status":"completed","usage":{"input_tokens":31,"input_tokens_details":{"cached_tokens":8},"output_tokens":12,"total_tokens":43}}}


        """
        allSplits(.sse, text, expect: Usage(promptTokens: 31, completionTokens: 12, totalTokens: 43, cachedTokens: 8))
    }

    @Test func responseEventNotCompletedIgnored() {
        let text = "data: {\"type\":\"response.in_progress\",\"response\":{\"usage\":{\"input_tokens\":1}}}\n\n"
        let (u, _) = feedAll(.sse, [text])
        #expect(u == nil)
    }

    @Test func firstUsageWins() {
        let text = "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n\ndata: {\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9,\"total_tokens\":18}}\n\n"
        let (u, _) = feedAll(.sse, [text])
        #expect(u?.promptTokens == 1)
    }

    @Test func nonStreamResponsesAndMisspelling() {
        let resp = #"{"id":"r","object":"response","output":[{"content":[{"text":"{\"usage\":1}"}]}],"usage":{"input_tokens":3,"output_tokens":4,"total_tokens":7,"input_tokens_details":{"cached_tokens":2}}}"#
        allSplits(.json, resp, expect: Usage(promptTokens: 3, completionTokens: 4, totalTokens: 7, cachedTokens: 2))
        // the reference's misspelt key is not read
        let chat = #"{"object":"chat.completion","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_token_details":{"cached_tokens":2}}}"#
        #expect(UsageScanner.parseJSON(Array(chat.utf8)) == Usage(promptTokens: 3, completionTokens: 4, totalTokens: 7))
        // object after usage still decides the naming
        let late = #"{"usage":{"input_tokens":3,"prompt_tokens":99,"output_tokens":4},"object":"response"}"#
        allSplits(.json, late, expect: Usage(promptTokens: 3, completionTokens: 4, totalTokens: 0))
        // usage only nested (not top-level) ⇒ nil
        #expect(UsageScanner.parseJSON(Array(#"{"data":{"usage":{"prompt_tokens":1}}}"#.utf8)) == nil)
        // fractional numbers are truncated
        #expect(UsageScanner.parseJSON(Array(#"{"usage":{"prompt_tokens":7.9,"completion_tokens":1e1,"total_tokens":"x"}}"#.utf8))
                    == Usage(promptTokens: 7, completionTokens: 10, totalTokens: 0))
    }

    @Test func splitMidEscape() {
        // escape sequence split between chunks, both in SSE and JSON mode
        let sse = "data: {\"choices\":[],\"model\":\"a\\\"b\\u00e9\",\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,\"total_tokens\":5}}\n\n"
        let cut = Array(sse.utf8).firstIndex(of: UInt8(ascii: "\\"))! + 1
        let b = Array(sse.utf8)
        var s = UsageScanner(mode: .sse)
        s.feed(Array(b[..<cut]))
        s.feed(Array(b[cut...]))
        #expect(s.usage == Usage(promptTokens: 2, completionTokens: 3, totalTokens: 5))
        let json = #"{"model":"x\"}\\","usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5},"note":"\u007d"}"#
        allSplits(.json, json, expect: Usage(promptTokens: 2, completionTokens: 3, totalTokens: 5))
    }

    @Test func boundedMemory() {
        // an oversized line is dropped, later lines still work
        var s = UsageScanner(mode: .sse, maxLineBytes: 1024)
        s.feed(Array("data: {\"x\":\"".utf8))
        for _ in 0..<100 { s.feed([UInt8](repeating: UInt8(ascii: "a"), count: 100)) }
        s.feed(Array("\",\"usage\":{\"prompt_tokens\":1}}\n\n".utf8))
        #expect(s.usage == nil)
        #expect(s.droppedLines == 1)
        s.feed(Array("data: {\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5,\"total_tokens\":9}}\n".utf8))
        #expect(s.usage == Usage(promptTokens: 4, completionTokens: 5, totalTokens: 9))
        // one huge chunk with the long line complete inside it
        var s2 = UsageScanner(mode: .sse, maxLineBytes: 128)
        s2.feed(Array(("data: {\"pad\":\"" + String(repeating: "x", count: 200) + "\"}\ndata: ").utf8))
        s2.feed(Array(("{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n").utf8))
        #expect(s2.usage?.totalTokens == 2)
        // JSON mode: oversized usage object is dropped
        var s3 = UsageScanner(mode: .json, maxLineBytes: 64)
        s3.feed(Array(("{\"usage\":{\"prompt_tokens\":1,\"x\":\"" + String(repeating: "y", count: 500) + "\"}}").utf8))
        #expect(s3.finish() == nil)
        #expect(s3.droppedLines == 1)
    }

    @Test func oversizedLineDroppedWhetherWholeOrSplit() {
        // fuzz finding: a usage line over the cap counted when it arrived in one chunk, dropped when split
        let line = Array(("data: {\"pad\":\"" + String(repeating: "x", count: 100)
            + "\",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n").utf8)
        var whole = UsageScanner(mode: .sse, maxLineBytes: 64)
        whole.feed(line)
        var split = UsageScanner(mode: .sse, maxLineBytes: 64)
        split.feed(Array(line[..<10]))
        split.feed(Array(line[10...]))
        #expect(whole.finish() == nil)
        #expect(split.finish() == nil)
        #expect(whole.droppedLines == 1)
        #expect(split.droppedLines == 1)
    }

    @Test func garbageNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("data: {}[]\"usage\\:,0123456789\n\r[DONE]prompt_tokens".utf8)
        for mode in [UsageScanner.Mode.sse, .json] {
            for _ in 0..<500 {
                var s = UsageScanner(mode: mode, maxLineBytes: 64)
                for _ in 0..<5 {
                    let n = Int.random(in: 0..<50, using: &rng)
                    s.feed((0..<n).map { _ in alphabet.randomElement(using: &rng)! })
                }
                _ = s.finish()
            }
        }
    }

    @Test func contentTypeMode() {
        #expect(UsageScanner(contentType: "text/event-stream; charset=utf-8").mode == .sse)
        #expect(UsageScanner(contentType: "Text/Event-Stream").mode == .sse)
        #expect(UsageScanner(contentType: "application/json").mode == .json)
        #expect(UsageScanner(contentType: nil).mode == .json)
    }
}

@Suite struct ResponseModelRewriteTests {
    @Test func rewritesBothSpellings() {
        let rw = ResponseModelRewriter(target: "my-model-12345", incoming: "my-model")
        let input = #"{"model":"my-model-12345","x":1}data: {"model": "my-model-12345"} "model":"my-model-123456""#
        let out = String(decoding: rw.rewrite(Array(input.utf8)), as: UTF8.self)
        #expect(out == #"{"model":"my-model","x":1}data: {"model": "my-model"} "model":"my-model-123456""#)
    }

    @Test func noMatchMeansNoCopy() {
        let rw = ResponseModelRewriter(target: "a", incoming: "b")
        let bytes = Array(#"{"model":"c"}"#.utf8)
        #expect(bytes.withUnsafeBytes { rw.rewrite($0) } == nil)
        #expect(ResponseModelRewriter(target: "a", incoming: "a").isIdentity)
    }

    @Test func blindReplaceLimitation() {
        // documented reference limitation: every unescaped occurrence is replaced, also in
        // nested objects that merely have a "model" member; escaped text inside strings is safe
        let rw = ResponseModelRewriter(target: "t", incoming: "i")
        let input = #"{"model":"t","choices":[{"text":"{\"model\":\"t\"}","tool":{"model":"t"}}]}"#
        let out = String(decoding: rw.rewrite(Array(input.utf8)), as: UTF8.self)
        #expect(out == #"{"model":"i","choices":[{"text":"{\"model\":\"t\"}","tool":{"model":"i"}}]}"#)
    }
}
