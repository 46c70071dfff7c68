import Foundation

/// Prometheus text exposition (format 0.0.4) of one simulated server, with the vLLM metric names
/// the picker scrapes (scheduling.md §8, model-server.md §2.5). Every series carries
/// `model_name="<served model>"`.
public enum SimMetrics {
    public static func render(_ state: ServerState, now: Date = Date()) -> String {
        let s = state.snapshot()
        let cfg = state.config
        let model = escape(cfg.model)
        let ml = "model_name=\"\(model)\""
        var out = ""
        out.reserveCapacity(4096)

        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: String, _ value: String) {
            out += "\(name){\(labels)} \(value)\n"
        }

        family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.")
        sample("vllm:num_requests_running", ml, "\(s.running)")
        family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.")
        sample("vllm:num_requests_waiting", ml, "\(s.waiting)")
        family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.")
        sample("vllm:kv_cache_usage_perc", ml, fmt(s.kvUsage))
        family("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage (deprecated alias).")
        sample("vllm:gpu_cache_usage_perc", ml, fmt(s.kvUsage))

        family("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig.")
        sample("vllm:cache_config_info",
               "block_size=\"\(s.blockSize)\",cache_dtype=\"auto\",enable_prefix_caching=\"True\",gpu_memory_utilization=\"0.9\",\(ml),num_cpu_blocks=\"0\",num_gpu_blocks=\"\(s.capacityBlocks)\"",
               "1")
        family("vllm:lora_requests_info", "gauge", "Running stats on lora requests.")
        sample("vllm:lora_requests_info",
               "max_lora=\"1\",\(ml),running_lora_adapters=\"\",waiting_lora_adapters=\"\"",
               fmt(now.timeIntervalSince1970))

        family("vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.")
        sample("vllm:prefix_cache_hits_total", ml, "\(s.prefixCacheHits)")
        family("vllm:prefix_cache_queries_total", "counter", "Prefix cache queries, in terms of number of queried tokens.")
        sample("vllm:prefix_cache_queries_total", ml, "\(s.prefixCacheQueries)")
        family("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.")
        sample("vllm:prompt_tokens_total", ml, "\(s.promptTokens)")
        family("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.")
        sample("vllm:generation_tokens_total", ml, "\(s.generationTokens)")
        family("vllm:request_success_total", "counter", "Count of successfully processed requests.")
        sample("vllm:request_success_total", "finished_reason=\"length\",\(ml)", "\(s.requestSuccess)")
        family("vllm:num_preemptions_total", "counter", "Cumulative number of preemption from the engine.")
        sample("vllm:num_preemptions_total", ml, "0")

        histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", s.ttft)
        histogram("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", s.e2e)
        histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", s.queueTime)

        func histogram(_ name: String, _ help: String, _ h: Histogram) {
            family(name, "histogram", help)
            for (b, c) in zip(h.bounds, h.counts) {
                sample(name + "_bucket", "le=\"\(fmt(b))\",\(ml)", "\(c)")
            }
            sample(name + "_bucket", "le=\"+Inf\",\(ml)", "\(h.count)")
            sample(name + "_sum", ml, fmt(h.sum))
            sample(name + "_count", ml, "\(h.count)")
        }
        return out
    }

    static func fmt(_ d: Double) -> String {
        if d.rounded() == d && abs(d) < 1e15 { return String(format: "%.1f", d) }
        return "\(d)"
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
