import EPPPicker
import EPPProtobuf
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct PickerConfigTests {
    @Test func defaultConfigHasTheReferenceShape() throws {
        let c = PickerConfig.defaultConfig(environment: PluginEnvironment())
        #expect(c.orderedProfiles.count == 1)
        let p = c.orderedProfiles[0]
        #expect(p.name == "default")
        #expect(p.scorers.map { "\($0.scorer.typeName)=\($0.weight)" }
                == ["queue-scorer=2.0", "kv-cache-utilization-scorer=2.0", "prefix-cache-scorer=3.0"])
        #expect(p.picker.typeName == "max-score-picker")
        #expect(p.filters.isEmpty)
        #expect(c.profileHandler.typeName == "single-profile-handler")
        #expect(c.saturationDetector.typeName == "utilization-detector")
        #expect(c.producers.map(\.typeName) == ["approx-prefix-cache-producer"])
        #expect(c.parser == .openai)
    }

    @Test func workedExampleOfSection4() throws {
        // A {q 0, kv 0.9, match 0}, B {q 4, kv 0.3, match 30}, C {q 8, kv 0.2, match 40} of 40 blocks ⇒ B
        let ds = goldenDatastore(3)
        setMetrics(ds, 0, queue: 0, kv: 0.9); setMetrics(ds, 1, queue: 4, kv: 0.3); setMetrics(ds, 2, queue: 8, kv: 0.2)
        let env = PluginEnvironment()
        let s = try makeScheduler(ds, env: env)
        let prompt = String(repeating: "abcdefgh", count: 320)   // 2560 bytes = 40 blocks of 64
        let body = "{\"model\":\"m\",\"prompt\":\"\(prompt)\"}"
        let hashes = PrefixHashChain.compute(model: "m", input: Array(prompt.utf8), blockChars: 64, maxBlocks: 256)
        #expect(hashes.count == 40)
        let eps = ds.snapshot().endpoints
        env.prefixIndex.record(Array(hashes.prefix(30)), endpoint: eps[1], capacity: 1000)
        env.prefixIndex.record(hashes, endpoint: eps[2], capacity: 1000)
        let d = decide(s, headers: [("x-epp-debug", "1")], body: body).decision
        #expect(d?.destination == "192.168.1.2:8000")
        let explain = d?.responseHeaders.first { $0.key == "x-epp-decision" }?.rawValue ?? ""
        #expect(explain.contains("pick 192.168.1.2:8000 total=4.650"))
        #expect(explain.contains("runner-up 192.168.1.3:8000 total=4.600"))
        #expect(explain.contains("queue-scorer=0.500x2"))
        #expect(explain.contains("prefix-cache-scorer=0.750x3"))
        #expect(explain.allSatisfy { $0.isASCII && $0 != "\n" && $0 != "\r" })
    }

    static let pdConfig = """
        apiVersion: llm-d.ai/v1alpha1
        kind: EndpointPickerConfig
        plugins:
        - type: prefix-cache-scorer
          parameters: {maxPrefixBlocksToMatch: 256, lruCapacityPerServer: 31250}
        - type: queue-scorer
        - type: prefill-filter
        - type: decode-filter
        - type: max-score-picker
        - type: prefix-based-pd-decider
          parameters: {nonCachedTokens: 16}
        - type: disagg-profile-handler
          parameters: {deciders: {prefill: prefix-based-pd-decider}}
        schedulingProfiles:
        - name: prefill
          plugins: [{pluginRef: prefill-filter}, {pluginRef: max-score-picker}, {pluginRef: prefix-cache-scorer, weight: 2}, {pluginRef: queue-scorer, weight: 1}]
        - name: decode
          plugins: [{pluginRef: decode-filter}, {pluginRef: max-score-picker}, {pluginRef: prefix-cache-scorer, weight: 2}, {pluginRef: queue-scorer, weight: 1}]
        """

    @Test func pdConfigLoadsAndDisaggregates() throws {
        let c = try PickerConfig.parse(text: Self.pdConfig, environment: PluginEnvironment())
        #expect(c.profileHandler.typeName == "disagg-profile-handler")
        #expect(c.orderedProfiles.map(\.name) == ["prefill", "decode"])
        let ds = goldenDatastore(4, labels: [["llm-d.ai/role": "prefill"], ["llm-d.ai/role": "decode"],
                                             ["llm-d.ai/role": "decode"], ["llm-d.ai/role": "prefill"]])
        for i in 0..<4 { setMetrics(ds, i, queue: i == 2 ? 0 : 3, kv: 0.1) }
        setMetrics(ds, 3, queue: 0, kv: 0.1)
        let env = PluginEnvironment()
        let s = try makeScheduler(ds, config: Self.pdConfig, env: env)
        // long prompt (≥ 16 tokens uncached) ⇒ decode .3 (queue 0), prefill .4 (queue 0)
        let long = "{\"model\":\"m\",\"prompt\":\"\(String(repeating: "x", count: 400))\"}"
        let d = try #require(decide(s, headers: [("x-prefiller-host-port", "1.2.3.4:1")], body: long).decision)
        #expect(d.destination == "192.168.1.3:8000")
        #expect(d.setHeaders == [HeaderValueOptionTest.make("x-prefiller-host-port", "192.168.1.4:8000")])
        #expect(d.alsoCharged.map(\.hostPort) == ["192.168.1.4:8000"])
        #expect(!d.removeHeaders.contains("x-prefiller-host-port"))   // overwritten instead
        s.release(d)
        // the same prompt again: decode endpoint now caches it ⇒ no prefill, client's header removed
        let d2 = try #require(decide(s, headers: [("x-prefiller-host-port", "1.2.3.4:1")], body: long).decision)
        #expect(d2.destination == "192.168.1.3:8000")
        #expect(d2.setHeaders.isEmpty)
        #expect(d2.removeHeaders.contains("x-prefiller-host-port"))
        s.release(d2)
        // a short prompt (< 16 tokens) never disaggregates
        let d3 = try #require(decide(s, body: "{\"model\":\"m\",\"prompt\":\"hi\"}").decision)
        #expect(d3.setHeaders.isEmpty)
        // no decode-capable endpoint ⇒ 429
        let prefillOnly = goldenDatastore(1, labels: [["llm-d.ai/role": "prefill"]])
        let s2 = try makeScheduler(prefillOnly, config: Self.pdConfig)
        #expect(decide(s2, body: long).error?.body == "inference error: ResourceExhausted - failed to find target endpoint: failed to find available decode workers")
    }

    @Test func preciseConfigLoadsUnchanged() throws {
        let text = """
            apiVersion: llm-d.ai/v1alpha1
            kind: EndpointPickerConfig
            plugins:
            - type: single-profile-handler
            - type: decode-filter
            - type: precise-prefix-cache-scorer
              parameters:
                tokenProcessorConfig: {blockSize: 64}          # must equal vLLM --block-size
                indexerConfig: {kvBlockIndexConfig: {enableMetrics: true}}
                kvEventsConfig: {zmqEndpoint: "tcp://*:5557", topicFilter: "kv@", concurrency: 4, discoverPods: false}
            - type: kv-cache-utilization-scorer
            - type: queue-scorer
            - type: max-score-picker
            schedulingProfiles:
            - name: default
              plugins: [{pluginRef: decode-filter}, {pluginRef: precise-prefix-cache-scorer, weight: 2}, {pluginRef: kv-cache-utilization-scorer, weight: 1}, {pluginRef: queue-scorer, weight: 1}, {pluginRef: max-score-picker}]
            """
        let c = try PickerConfig.parse(text: text, environment: PluginEnvironment())
        #expect(c.orderedProfiles[0].scorers.count == 3)
        #expect(!c.warnings.isEmpty)
        let producer = try #require(c.producers.first as? ApproxPrefixCacheProducer)
        #expect(producer.blockSizeTokens == 64)
    }

    func expectError(_ text: String, line: Int?, contains: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try PickerConfig.parse(text: text, environment: PluginEnvironment())
            Issue.record("expected an error", sourceLocation: sourceLocation)
        } catch {
            #expect(error.line == line, "\(error)", sourceLocation: sourceLocation)
            #expect(error.description.contains(contains), "\(error)", sourceLocation: sourceLocation)
            if let line { #expect(error.description.hasPrefix("line \(line): "), sourceLocation: sourceLocation) }
        }
    }

    @Test func strictErrorsNameTheLine() {
        let head = "apiVersion: llm-d.ai/v1\nkind: EndpointPickerConfig\n"
        expectError(head + "plugins:\n- type: queue-scorer\n  parameterz: {}\n", line: 5, contains: "unknown field 'parameterz'")
        expectError(head + "plugins:\n- type: queue-scorer\n- type: no-such-scorer\n", line: 5, contains: "unknown plugin type 'no-such-scorer'")
        expectError(head + "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: a\n  plugins:\n  - pluginRef: queue-scorer\n  - pluginRef: missing\n",
                    line: 9, contains: "unknown plugin reference 'missing'")
        expectError(head + "plugins:\n- type: load-aware-scorer\n  parameters:\n    threshold: 5\n    treshold: 7\n", line: 7, contains: "unknown field 'treshold'")
        expectError(head + "plugins:\n- type: load-aware-scorer\n  parameters:\n    threshold: many\n", line: 6, contains: "must be an integer")
        expectError(head + "featureGates: [flowControl, warpDrive]\n", line: 3, contains: "unknown feature gate 'warpDrive'")
        expectError(head + "extraTopLevel: 1\n", line: 3, contains: "unknown field 'extraTopLevel'")
        expectError("apiVersion: v9\nkind: EndpointPickerConfig\n", line: 1, contains: "unsupported apiVersion")
        expectError(head + "plugins:\n- type: approx-prefix-cache-producer\n  parameters: {blockSize: 64}\n", line: 5, contains: "blockSizeTokens")
        expectError(head + "plugins:\n- type: queue-scorer\n- type: queue-scorer\n", line: 5, contains: "duplicate plugin name")
        expectError(head + "saturationDetector: {pluginRef: nope}\n", line: 3, contains: "unknown plugin reference 'nope'")
        expectError(head + "plugins:\n- type: random-picker\n- type: max-score-picker\nschedulingProfiles:\n- name: a\n  plugins: [{pluginRef: random-picker}, {pluginRef: max-score-picker}]\n",
                    line: 8, contains: "more than one picker")
        expectError(head + "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: a\n- name: b\n", line: nil, contains: "need a profile handler")
    }

    @Test func defaultsInjected() throws {
        let c = try PickerConfig.parse(text: "apiVersion: llm-d.ai/v1\nkind: EndpointPickerConfig\nplugins:\n- type: decode-filter\n- type: load-aware-scorer\n  name: load\n",
                                       environment: PluginEnvironment())
        let p = c.orderedProfiles[0]
        #expect(p.name == "default")
        #expect(p.filters.map(\.name) == ["decode-filter"])
        #expect(p.scorers.map(\.scorer.name) == ["load"])
        #expect(p.scorers[0].weight == 1)
        #expect(p.picker.typeName == "max-score-picker")
        #expect(c.producers.isEmpty)   // nothing consumes prefix info
    }

    @Test func legacyPDHandlerAndGIEVersionLoad() throws {
        let text = """
            apiVersion: inference.networking.x-k8s.io/v1alpha1
            kind: EndpointPickerConfig
            featureGates: [enableLegacyMetrics]
            plugins:
            - type: pd-profile-handler
              parameters: {threshold: 0, hashBlockSize: 64}
            - type: prefill-filter
            - type: decode-filter
            - type: prefix-cache-scorer
            schedulingProfiles:
            - name: prefill
              plugins: [{pluginRef: prefill-filter}, {pluginRef: prefix-cache-scorer}]
            - name: decode
              plugins: [{pluginRef: decode-filter}, {pluginRef: prefix-cache-scorer}]
            """
        let c = try PickerConfig.parse(text: text, environment: PluginEnvironment())
        #expect(c.warnings.contains { $0.contains("deprecated") })
        let ds = goldenDatastore(2, labels: [["llm-d.ai/role": "prefill"], ["llm-d.ai/role": "decode"]])
        let s = try makeScheduler(ds, config: text)
        let d = try #require(decide(s, body: "{\"model\":\"m\",\"prompt\":\"hi\"}").decision)
        #expect(d.destination == "192.168.1.2:8000")
        #expect(d.setHeaders.first?.rawValue == "192.168.1.1:8000")   // threshold 0 ⇒ always disaggregate
    }

    @Test func holderSwapChangesDecisions() throws {
        let ds = goldenDatastore(2)
        setMetrics(ds, 0, queue: 0, kv: 0.9); setMetrics(ds, 1, queue: 5, kv: 0.0)
        let queueHeavy = "apiVersion: llm-d.ai/v1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n- type: kv-cache-utilization-scorer\nschedulingProfiles:\n- name: d\n  plugins: [{pluginRef: queue-scorer, weight: 5}, {pluginRef: kv-cache-utilization-scorer, weight: 1}]\n"
        let kvHeavy = "apiVersion: llm-d.ai/v1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n- type: kv-cache-utilization-scorer\nschedulingProfiles:\n- name: d\n  plugins: [{pluginRef: queue-scorer, weight: 1}, {pluginRef: kv-cache-utilization-scorer, weight: 5}]\n"
        let holder = ConfigHolder(try PickerConfig.parse(text: queueHeavy))
        let s = FrameworkScheduler(datastore: ds, config: holder, options: fixedOptions())
        #expect(decide(s, body: "{\"model\":\"m\",\"prompt\":\"hi\"}").decision?.destination == "192.168.1.1:8000")
        holder.swap(try PickerConfig.parse(text: kvHeavy))
        #expect(decide(s, body: "{\"model\":\"m\",\"prompt\":\"hi\"}").decision?.destination == "192.168.1.2:8000")
        #expect(holder.generation == 1)
    }

    @Test func explainSwitchInConfig() throws {
        let ds = goldenDatastore(2)
        let text = PickerConfig.defaultConfigText + "explainDecisions: true\n"
        let s = try makeScheduler(ds, config: text)
        let d = decide(s, body: "{\"model\":\"m\",\"prompt\":\"hi\"}").decision
        #expect(d?.responseHeaders.contains { $0.key == "x-epp-decision" } == true)
        let quiet = try makeScheduler(ds)
        #expect(decide(quiet, body: "{\"model\":\"m\",\"prompt\":\"hi\"}").decision?.responseHeaders.isEmpty == true)
    }

    @Test func loadFromFileNamesFileAndLine() throws {
        let path = "/tmp/epp-sched-test-\(UInt32.random(in: 0...UInt32.max)).yaml"
        try Array("apiVersion: llm-d.ai/v1\nkind: EndpointPickerConfig\nbogus: 1\n".utf8).writeFile(path)
        do {
            _ = try PickerConfig.load(path: path, environment: PluginEnvironment())
            Issue.record("expected error")
        } catch {
            #expect(error.line == 3)
            #expect(error.description.contains(path))
        }
    }
}

enum HeaderValueOptionTest {
    static func make(_ k: String, _ v: String) -> HeaderValueOption { HeaderValueOption(key: k, rawValue: v) }
}

extension Array where Element == UInt8 {
    func writeFile(_ path: String) throws {
        guard let f = fopen(path, "wb") else { throw PickerConfigError(line: nil, "cannot write \(path)") }
        defer { fclose(f) }
        _ = withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    }
}
