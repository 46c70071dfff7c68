import Testing
@testable import EPPPicker

// Sample expositions written from the scheduling.md §8 contract, in the shape
// the engines emit (HELP/TYPE lines, histograms, model_name labels).
let vllmSample = #"""
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.4125
# HELP vllm:lora_requests_info Running stats on lora requests.
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""} 1.7345e+09
vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql-lora-1fdg2, foo",waiting_lora_adapters="bar"} 1.7345000042e+09
vllm:lora_requests_info{max_lora="4",running_lora_adapters="old",waiting_lora_adapters=""} 1.7344e+09
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",calculate_kv_scales="False",cpu_offload_gb="0",enable_prefix_caching="True",gpu_memory_utilization="0.9",is_attention_free="False",num_cpu_blocks="None",num_gpu_blocks="31250",num_gpu_blocks_override="None",sliding_window="None",swap_space_bytes="4294967296"} 1.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="m"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 12.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 12.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 1.5
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 12345.0

"""#

let vllmOldSample = """
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 0
vllm:num_requests_waiting{model_name="m"} 2
vllm:gpu_cache_usage_perc{model_name="m"} 0.25
"""

let sglangSample = """
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="qwen",tp_rank="0"} 5.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="qwen",tp_rank="0"} 11.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="qwen",tp_rank="0"} 0.73
# TYPE sglang:cache_config_info gauge
sglang:cache_config_info{page_size="1",num_pages="500000"} 1
"""

let trtllmSample = """
trtllm_num_requests_waiting 4
trtllm_num_requests_running 2
trtllm_kv_cache_utilization 0.5
trtllm_kv_cache_tokens_per_block 32
trtllm_kv_cache_max_blocks 2048
"""

let tritonSample = """
# TYPE nv_trt_llm_request_metrics gauge
nv_trt_llm_request_metrics{model="ensemble",request_type="context",version="1"} 1
nv_trt_llm_request_metrics{model="ensemble",request_type="scheduled",version="1"} 6
nv_trt_llm_request_metrics{model="ensemble",request_type="waiting",version="1"} 9
nv_trt_llm_request_metrics{model="ensemble",request_type="max",version="1"} 512
# TYPE nv_trt_llm_kv_cache_block_metrics gauge
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction",model="tensorrt_llm",version="1"} 0.125
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="tokens_per",model="tensorrt_llm",version="1"} 64
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max",model="tensorrt_llm",version="1"} 4096
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="tensorrt_llm",version="1"} 512
"""

@Suite struct PrometheusTextTests {
    @Test func parsesFormatDetails() throws {
        let text = "# HELP x y\n\n  \t\n# TYPE a gauge\n" +
            "a 1\n" +
            "a_b:c{} 2.5 1700000000000\n" +
            "m{l=\"v\",} NaN\n" +
            "m { l = \"x\\\\y\\\"z\\nw\" , k=\"\" } +Inf\n" +
            "m{l=\"é,}{\\q\"} -Inf\r\n" +
            "n 1e-3 -5\n" +
            "\tindented 7\n" +
            "last -0"
        let s = try PrometheusText.parse(text)
        #expect(s.count == 8)
        #expect(s[0] == PrometheusSample(name: "a", value: 1))
        #expect(s[1] == PrometheusSample(name: "a_b:c", value: 2.5, timestampMs: 1_700_000_000_000))
        #expect(s[2].value.isNaN && s[2].label("l") == "v")
        #expect(s[3].labels == [PrometheusLabel(name: "l", value: "x\\y\"z\nw"), PrometheusLabel(name: "k", value: "")])
        #expect(s[3].value == .infinity)
        #expect(s[4].label("l") == "é,}{\\q")
        #expect(s[4].value == -.infinity)
        #expect(s[5].value == 0.001 && s[5].timestampMs == -5)
        #expect(s[6].name == "indented")
        #expect(s[7].value == 0 && s[7].value.sign == .minus)
    }

    @Test func errors() {
        let bad: [(String, String)] = [
            ("1abc 1", "line 1: invalid metric name start '1'"),
            ("a{", "line 1: unterminated label set"),
            ("a{l=\"v} 1", "line 1: unterminated label value"),
            ("a{l=v} 1", "line 1: expected '\"' to start label value"),
            ("a{l} 1", "line 1: expected '=' after label name"),
            ("a{1=\"v\"} 1", "line 1: invalid label name start '1'"),
            ("a{l=\"v\" k=\"w\"} 1", "line 1: expected ',' or '}' after label value, found 'k'"),
            ("ok 1\na", "line 2: missing sample value"),
            ("a one", "line 1: invalid sample value \"one\""),
            ("a 0x10", "line 1: invalid sample value \"0x10\""),
            ("a 1 2.5", "line 1: invalid timestamp \"2.5\""),
            ("a 1 2 3", "line 1: unexpected text after timestamp"),
        ]
        for (text, msg) in bad {
            do {
                _ = try PrometheusText.parse(text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.description == msg, "\(text)")
            }
        }
    }

    @Test func limits() {
        let long = "a{l=\"" + String(repeating: "x", count: 100) + "\"} 1"
        #expect(throws: PrometheusParseError.self) {
            try PrometheusText.parse(long, limits: .init(maxLineLength: 50))
        }
        let many = (0..<20).map { "m\($0) 1" }.joined(separator: "\n")
        #expect(throws: PrometheusParseError.self) { try PrometheusText.parse(many, limits: .init(maxSamples: 10)) }
        #expect((try? PrometheusText.parse(many, limits: .init(maxSamples: 20)))?.count == 20)
        let labels = "m{" + (0..<10).map { "l\($0)=\"v\"" }.joined(separator: ",") + "} 1"
        #expect(throws: PrometheusParseError.self) { try PrometheusText.parse(labels, limits: .init(maxLabels: 5)) }
        #expect(throws: PrometheusParseError.self) { try PrometheusText.parse(many, limits: .init(maxBytes: 10)) }
    }

    @Test func garbageNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("ab_:{}=\",\\ \n#0123456789.eE+-InfNa\t\r".utf8)
        for _ in 0..<3000 {
            let n = Int.random(in: 0..<60, using: &rng)
            let bytes = (0..<n).map { _ in alphabet.randomElement(using: &rng)! }
            _ = try? bytes.withUnsafeBytes { try PrometheusText.parse(bytes: $0) }
        }
    }

    @Test func vllmSampleParses() throws {
        let all = try PrometheusText.parse(vllmSample)
        #expect(all.count == 12)
    }
}

@Suite struct EndpointMetricsTests {
    @Test func vllm() throws {
        let now: UInt64 = 123_456_789
        let m = try EndpointMetrics.extract(from: vllmSample, engine: .vllm, now: now)
        #expect(m.waitingQueueSize == 7)
        #expect(m.runningRequests == 3)
        #expect(m.kvCacheUsage == 0.4125)
        #expect(m.kvBlockSize == 16)
        #expect(m.kvNumBlocks == 31250)
        #expect(m.activeLoRAs == ["sql-lora-1fdg2", "foo"])
        #expect(m.waitingLoRAs == ["bar"])
        #expect(m.maxLoRA == 4)
        #expect(m.updatedAt == now)
        #expect(m.missing.isEmpty)
    }

    @Test func vllmOldKVName() throws {
        let m = try EndpointMetrics.extract(from: vllmOldSample, engine: .vllm)
        #expect(m.kvCacheUsage == 0.25)
        #expect(m.waitingQueueSize == 2)
        #expect(m.runningRequests == 0)
        #expect(m.kvBlockSize == nil && m.kvNumBlocks == nil)
        #expect(m.activeLoRAs.isEmpty && m.maxLoRA == nil)
        #expect(m.missing.isEmpty)
    }

    @Test func newKVNameWinsOverOld() throws {
        let text = "vllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.1\nvllm:num_requests_waiting 0\nvllm:num_requests_running 0\n"
        #expect(try EndpointMetrics.extract(from: text, engine: .vllm).kvCacheUsage == 0.1)
    }

    @Test func sglang() throws {
        let m = try EndpointMetrics.extract(from: sglangSample, engine: .sglang)
        #expect(m.waitingQueueSize == 11)
        #expect(m.runningRequests == 5)
        #expect(m.kvCacheUsage == 0.73)
        #expect(m.kvBlockSize == 1)
        #expect(m.kvNumBlocks == 500_000)
        #expect(m.missing.isEmpty)
    }

    @Test func trtllmServe() throws {
        let m = try EndpointMetrics.extract(from: trtllmSample, engine: .trtllmServe)
        #expect(m.waitingQueueSize == 4 && m.runningRequests == 2 && m.kvCacheUsage == 0.5)
        #expect(m.kvBlockSize == 32 && m.kvNumBlocks == 2048)
    }

    @Test func triton() throws {
        let m = try EndpointMetrics.extract(from: tritonSample, engine: .tritonTensorRTLLM)
        #expect(m.waitingQueueSize == 9 && m.runningRequests == 6 && m.kvCacheUsage == 0.125)
        #expect(m.kvBlockSize == 64 && m.kvNumBlocks == 4096)
    }

    @Test func wrongEngineReportsMissing() throws {
        let m = try EndpointMetrics.extract(from: sglangSample, engine: .vllm)
        #expect(m.missing == ["waitingQueueSize", "runningRequests", "kvCacheUsage"])
        #expect(m.waitingQueueSize == 0 && m.kvCacheUsage == 0)
    }

    @Test func latestTimestampWinsAndClamping() throws {
        let text = """
        vllm:num_requests_waiting{a="1"} 5 1000
        vllm:num_requests_waiting{a="2"} 8 3000
        vllm:num_requests_waiting{a="3"} 2 2000
        vllm:num_requests_running 1
        vllm:num_requests_running 9
        vllm:kv_cache_usage_perc 1.7
        """
        let m = try EndpointMetrics.extract(from: text, engine: .vllm)
        #expect(m.waitingQueueSize == 8)
        #expect(m.runningRequests == 1)
        #expect(m.kvCacheUsage == 1)
    }

    @Test func malformedThrows() {
        #expect(throws: PrometheusParseError.self) { try EndpointMetrics.extract(from: "vllm:num_requests_waiting{", engine: .vllm) }
    }

    @Test func engineTypeFromLabels() {
        #expect(EngineType.from(labels: [:]) == .vllm)
        #expect(EngineType.from(labels: [EngineType.labelKey: "sglang"]) == .sglang)
        #expect(EngineType.from(labels: [EngineType.labelKey: "trtllm-serve"]) == .trtllmServe)
        #expect(EngineType.from(labels: [EngineType.labelKey: "triton-tensorrt-llm"]) == .tritonTensorRTLLM)
        #expect(EngineType.from(labels: [EngineType.labelKey: "unknown"]) == .vllm)
    }

    @Test func metricSpecParsing() {
        #expect(MetricSpec.parse("vllm:num_requests_waiting") == MetricSpec("vllm:num_requests_waiting"))
        #expect(MetricSpec.parse(#"nv_trt_llm_request_metrics{request_type="waiting"}"#)
                    == MetricSpec("nv_trt_llm_request_metrics", label: "request_type", value: "waiting"))
        #expect(MetricSpec.parse(" a{ b = \"c\" } ") == MetricSpec("a", label: "b", value: "c"))
        #expect(MetricSpec.parse("") == nil)
        #expect(MetricSpec.parse("a{b}") == nil)
        #expect(MetricSpec.parse("a b") == nil)
        #expect(MetricSpec("x", label: "l", value: "v").description == #"x{l="v"}"#)
    }
}
