// epp-load: load generator for OpenAI-compatible endpoints (see EPPLoad).
import ArgumentParser
import EPPLoad
import Foundation

struct EPPLoadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "epp-load",
        abstract: "Load generator for OpenAI-compatible servers: shared-prefix / multi-turn / random workloads, TTFT/E2E/ITL percentiles, prefix hit rate, per-endpoint counts, group purity.")

    @Option(help: "Base URL of the server or gateway.") var target = "http://127.0.0.1:8000"
    @Option(help: "Model name sent in requests.") var model = "meta-llama/Llama-3.1-8B-Instruct"
    @Option(help: "Workload: shared-prefix | multi-turn | random.") var workload = "shared-prefix"
    @Option(help: "API: completions | chat.") var api = "completions"
    @Flag(help: "Stream responses (SSE) and measure TTFT at the first content chunk.") var stream = false
    @Option(help: "Groups (shared prefixes / conversations).") var groups = 6
    @Option(help: "Prompts per group (turns per conversation).") var promptsPerGroup = 20
    @Option(help: "Shared system prompt length in simulator tokens.") var systemPromptTokens = 1000
    @Option(help: "Question length in simulator tokens.") var questionTokens = 64
    @Option(help: "Output tokens per request (max_tokens).") var outputTokens = 16
    @Option(help: "Total requests (default groups × prompts-per-group).") var requests: Int?
    @Option(help: "Closed loop: requests in flight.") var concurrency = 8
    @Option(help: "Open loop: Poisson arrival rate per second (overrides --concurrency).") var rate: Double?
    @Option(help: "Seed for reproducible prompts and order.") var seed: UInt64 = 1
    @Option(help: "Per-request timeout, seconds.") var timeout = 60.0
    @Option(help: "Write the JSON report to this file.") var json: String?
    @Option(help: "Write a self-contained HTML report to this file.") var html: String?
    @Flag(help: "No progress line on stderr.") var quiet = false

    func makeConfig() throws -> LoadConfig {
        var c = LoadConfig()
        guard let w = WorkloadKind(rawValue: workload) else {
            throw ValidationError("--workload must be shared-prefix, multi-turn or random (got \(workload))")
        }
        guard let a = APIKind(rawValue: api) else { throw ValidationError("--api must be completions or chat (got \(api))") }
        c.target = target
        c.model = model
        c.workload = w
        c.api = a
        c.stream = stream
        c.groups = groups
        c.promptsPerGroup = promptsPerGroup
        c.systemPromptTokens = systemPromptTokens
        c.questionTokens = questionTokens
        c.outputTokens = outputTokens
        c.requests = requests
        c.concurrency = concurrency
        c.rate = rate
        c.seed = seed
        c.timeout = timeout
        do { try c.validate() } catch let e as LoadConfig.Invalid { throw ValidationError(e.description) }
        return c
    }
}

func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("epp-load: error: \(message)\n".utf8))
    exit(code)
}

let cmd: EPPLoadCommand
let config: LoadConfig
do {
    cmd = try EPPLoadCommand.parse(Array(CommandLine.arguments.dropFirst()))
    config = try cmd.makeConfig()
} catch {
    if EPPLoadCommand.exitCode(for: error) == .success {
        print(EPPLoadCommand.fullMessage(for: error))
        exit(0)
    }
    let msg = EPPLoadCommand.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid arguments"
    fail(msg + " (see --help)", code: 2)
}

let results: LoadResults
do {
    results = try await LoadRunner(config: config, progress: !cmd.quiet).run()
} catch {
    fail("\(error)", code: 1)
}
let report = LoadReport(results)
print(report.table(), terminator: "")
do {
    if let path = cmd.json { try report.jsonData().write(to: URL(fileURLWithPath: path)) }
    if let path = cmd.html { try Data(HTMLReport.render(report: report, results: results).utf8).write(to: URL(fileURLWithPath: path)) }
} catch {
    fail("cannot write report: \(error)", code: 1)
}
exit(0)
