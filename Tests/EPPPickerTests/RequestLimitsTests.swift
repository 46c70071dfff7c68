import EPPPicker
import EPPProtobuf
import Testing

/// Limits on what a client controls inside a request: JSON nesting (`--max-json-depth`), prompt bytes
/// hashed for prefix matching (`--max-prefix-hash-bytes`), and the routing header a client may send.
@Suite struct RequestLimitsTests {
    func scheduler(_ configure: (inout FrameworkScheduler.Options) -> Void) throws -> FrameworkScheduler {
        let ds = goldenDatastore(3)
        for i in 0..<3 { setMetrics(ds, i, queue: 0, kv: 0.1) }
        var o = fixedOptions()
        configure(&o)
        return FrameworkScheduler(datastore: ds, config: ConfigHolder(PickerConfig.defaultConfig(environment: PluginEnvironment())), options: o)
    }

    func nested(_ depth: Int) -> String {
        // the body object is level 1; `x` adds depth - 1 levels of arrays
        "{\"model\":\"m\",\"prompt\":\"p\",\"x\":" + String(repeating: "[", count: depth - 1) + String(repeating: "]", count: depth - 1) + "}"
    }

    @Test func jsonDepthFlagIsEnforcedByTheScheduler() throws {
        let s = try scheduler { $0.maxJSONDepth = 4 }
        #expect(decide(s, body: nested(4)).decision != nil)
        let e = try #require(decide(s, body: nested(5)).error)
        #expect(e.httpStatus == 400)
        #expect(e.message.contains("exceeded max nesting depth 4"))
        // the default (128) accepts what 4 refused
        #expect(decide(try scheduler { _ in }, body: nested(5)).decision != nil)
    }

    @Test func prefixHashInputIsCappedByTheProcessWideLimit() throws {
        let prompt = String(repeating: "abcdefgh", count: 1000)   // 8,000 bytes = 125 blocks of 64 chars
        let body = "{\"model\":\"m\",\"prompt\":\"\(prompt)\"}"
        let uncapped = try scheduler { _ in }
        _ = decide(uncapped, body: body)
        #expect(uncapped.lastContext.prefixHashes.count == 125)   // under the config's 256 blocks
        let capped = try scheduler { $0.maxPrefixHashBytes = 640 }
        _ = decide(capped, body: body)
        #expect(capped.lastContext.prefixHashes.count == 10)
        // chat messages go through the serialised-messages path: capped the same way
        let chat = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\(prompt)\"}]}"
        _ = decide(capped, path: "/v1/chat/completions", body: chat)
        #expect(capped.lastContext.prefixHashes.count == 10)
        let none = try scheduler { $0.maxPrefixHashBytes = 0 }
        #expect(decide(none, body: body).decision != nil)   // nothing hashed, still routed
        #expect(none.lastContext.prefixHashes.isEmpty)
    }

    @Test func clientSentDestinationHeaderIsOverwrittenNotEchoed() throws {
        let s = try scheduler { _ in }
        let h = StreamHarness(s)
        let answers = run(h, headers: [("x-gateway-destination-endpoint", "10.66.66.66:6666")],
                          body: "{\"model\":\"m\",\"prompt\":\"hi\"}")
        let mutation = try #require(answers.first?.requestHeadersMutation)
        let ours = mutation.setHeaders.filter { $0.key == "x-gateway-destination-endpoint" }
        #expect(ours.count == 1)
        #expect(ours[0].rawValue.hasPrefix("192.168.1."))
        #expect(ours[0].append != true)   // ext_proc 1.40 honours only `append`; unset = overwrite
        #expect(!mutation.setHeaders.contains { $0.rawValue.contains("10.66.66.66") })
    }
}
