// epp-sim: N simulated vLLM servers on consecutive ports (see EPPSim).
import ArgumentParser
import EPPSim
import Foundation

struct EPPSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "epp-sim",
        abstract: "Simulated vLLM model servers (OpenAI API, prefix KV cache, queueing, /metrics) for EPP tests.")

    @Option(help: "Bind address (keep loopback).") var host = "127.0.0.1"
    @Option(help: "First port; server i listens on port+i (0 = free ports).") var port = 8000
    @Option(help: "Number of servers.") var count = 1
    @Option(help: "Served model name.") var model = "meta-llama/Llama-3.1-8B-Instruct"
    @Option(help: "x-inference-pod prefix (default: sanitised model name); pod = <prefix>-<index>.") var podNamePrefix: String?
    @Option(help: "KV cache capacity per server, in blocks.") var kvBlocks = 1024
    @Option(help: "Tokens per KV block.") var blockSize = 16
    @Option(help: "Max running requests per server.") var maxNumSeqs = 16
    @Option(help: "Max waiting requests per server (then 429).") var maxWaiting = 1000
    @Option(help: "Max prompt+output tokens per request.") var maxModelLen = 131_072
    @Option(help: "P/D role: prefill | decode | both.") var role = "both"
    @Option(help: "Multiply every simulated duration (0.1 = 10x faster).") var timeScale = 1.0
    @Option(help: "Fraction of requests answered with HTTP 500.") var failRate = 0.0
    @Option(help: "Fraction of requests slowed down by --slow-factor.") var slowRate = 0.0
    @Option(help: "Duration multiplier of slow requests.") var slowFactor = 5.0
    @Option(help: "Prefill overhead per request (ms).") var prefillOverheadMs = 30.0
    @Option(help: "Prefill time per uncached prompt token (ms).") var prefillPerTokenMs = 0.17
    @Option(help: "Inter-token latency (ms).") var itlMs = 15.0
    @Option(help: "Load factor F at max-num-seqs running (f(R) = 1+(F-1)(R-1)/(max-num-seqs-1)).") var loadFactor = 2.0
    @Option(help: "KV transfer setup time for remote prefill (ms).") var kvTransferMs = 1.0
    @Option(help: "KV transfer time per prompt token for remote prefill (µs).") var kvTransferPerTokenUs = 6.0
    @Option(help: "Seed for fail/slow draws.") var seed: UInt64 = 0
    @Option(help: "HTTP server log level (trace|debug|info|notice|warning|error|critical).") var logLevel = "critical"

    func makeConfig() throws -> SimulatorConfig {
        guard let r = SimRole(rawValue: role) else {
            throw ValidationError("--role must be prefill, decode or both (got \(role))")
        }
        var c = SimulatorConfig()
        c.host = host
        c.port = port
        c.count = count
        c.model = model
        c.podNamePrefix = podNamePrefix
        c.kvBlocks = kvBlocks
        c.blockSize = blockSize
        c.maxNumSeqs = maxNumSeqs
        c.maxWaiting = maxWaiting
        c.maxModelLen = maxModelLen
        c.role = r
        c.timeScale = timeScale
        c.failRate = failRate
        c.slowRate = slowRate
        c.slowFactor = slowFactor
        c.latency.prefillOverhead = prefillOverheadMs / 1000
        c.latency.prefillPerToken = prefillPerTokenMs / 1000
        c.latency.interTokenLatency = itlMs / 1000
        c.latency.loadFactor = loadFactor
        c.latency.kvTransferOverhead = kvTransferMs / 1000
        c.latency.kvTransferPerToken = kvTransferPerTokenUs / 1_000_000
        c.seed = seed
        c.logLevel = logLevel
        do { try c.validate() } catch let e as SimulatorConfig.Invalid { throw ValidationError(e.description) }
        return c
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("epp-sim: error: \(message)\n".utf8))
    exit(2)
}

let config: SimulatorConfig
do {
    let cmd = try EPPSimCommand.parse(Array(CommandLine.arguments.dropFirst()))
    config = try cmd.makeConfig()
} catch {
    if EPPSimCommand.exitCode(for: error) == .success {
        print(EPPSimCommand.fullMessage(for: error))
        exit(0)
    }
    let msg = EPPSimCommand.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid arguments"
    fail(msg + " (see --help)")
}

do {
    try await SimulatorFleet.run(config: config)
} catch {
    FileHandle.standardError.write(Data("epp-sim: \(error)\n".utf8))
    exit(1)
}
