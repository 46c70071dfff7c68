import Foundation

/// Kind of synthetic workload.
public enum WorkloadKind: String, Sendable, CaseIterable, Codable {
    /// Per group a random system prompt of `systemPromptTokens` tokens shared by its
    /// `promptsPerGroup` prompts, each with its own `questionTokens`-token question
    /// (inference-perf `shared_prefix`).
    case sharedPrefix = "shared-prefix"
    /// `groups` conversations of `promptsPerGroup` turns; each turn appends the previous answer
    /// and a new question; turns of one conversation are sequential.
    case multiTurn = "multi-turn"
    /// Independent random prompts, length uniform in [½, 1½] × (system + question tokens);
    /// request *i* is labelled group `i % groups` (purity is meaningless here).
    case random
}

/// Which OpenAI endpoint to call.
public enum APIKind: String, Sendable, CaseIterable, Codable {
    case completions
    case chat

    public var path: String { self == .chat ? "/v1/chat/completions" : "/v1/completions" }
}

/// Configuration of a load run (the `epp-load` flags).
public struct LoadConfig: Sendable, Equatable {
    /// Base URL `http://host:port`.
    public var target = "http://127.0.0.1:8000"
    public var model = "meta-llama/Llama-3.1-8B-Instruct"
    public var api: APIKind = .completions
    public var workload: WorkloadKind = .sharedPrefix
    public var groups = 6
    public var promptsPerGroup = 20
    public var systemPromptTokens = 1000
    public var questionTokens = 64
    public var outputTokens = 16
    /// Total requests; default `groups × promptsPerGroup`.
    public var requests: Int? = nil
    /// Closed loop: requests in flight.
    public var concurrency = 8
    /// Open loop: Poisson arrivals per second (overrides concurrency when set).
    public var rate: Double? = nil
    public var stream = false
    public var seed: UInt64 = 1
    /// Per-request timeout in seconds.
    public var timeout = 60.0

    public init() {}

    public var totalRequests: Int { requests ?? groups * promptsPerGroup }

    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public let description: String
        public init(_ d: String) { description = d }
    }

    public func validate() throws {
        func fail(_ m: String) throws -> Never { throw Invalid(m) }
        guard let url = URL(string: target), let scheme = url.scheme, scheme == "http" || scheme == "https", url.host != nil else {
            try fail("--target must be a base URL like http://127.0.0.1:8000 (got \(target))")
        }
        if groups < 1 { try fail("--groups must be ≥ 1") }
        if promptsPerGroup < 1 { try fail("--prompts-per-group must be ≥ 1") }
        if systemPromptTokens < 0 { try fail("--system-prompt-tokens must be ≥ 0") }
        if questionTokens < 1 { try fail("--question-tokens must be ≥ 1") }
        if outputTokens < 1 { try fail("--output-tokens must be ≥ 1") }
        if let r = requests, r < 1 { try fail("--requests must be ≥ 1") }
        if concurrency < 1 { try fail("--concurrency must be ≥ 1") }
        if let r = rate, !(r > 0) || !r.isFinite { try fail("--rate must be > 0") }
        if !(timeout > 0) { try fail("--timeout must be > 0") }
        if model.isEmpty { try fail("--model must not be empty") }
    }

    /// Base URL without a trailing slash.
    public var baseURL: String {
        var t = target
        while t.hasSuffix("/") { t.removeLast() }
        return t
    }
}

/// Text whose length is known in *simulator tokens* without tokenising: every word has at most
/// four letters and is preceded by one space, and the EPPSim tokenizer makes each such `" word"`
/// exactly one token (copy of `SimText.words`; EPPLoad does not depend on EPPSim).
public enum LoadText {
    public static let words: [String] = [
        "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
        "on", "not", "he", "this", "are", "or", "his", "from", "at", "but", "have", "an", "they",
        "one", "you", "were", "her", "all", "she", "when", "can", "who", "will", "more", "no", "if",
        "out", "so", "said", "what", "up", "its", "into", "than", "them", "only", "new", "some",
        "time", "two", "may", "then", "do", "any", "like", "my", "now", "over", "such", "our",
        "man", "me", "even", "most", "made", "also", "did", "many", "well", "way", "down", "old",
        "year", "work", "just", "long", "used", "much", "high", "good", "life", "know", "take",
        "need", "far", "each", "make", "part", "both", "few", "less", "very", "here", "best", "cat",
        "dog", "sun", "red", "blue", "fish", "tree", "road", "rain", "snow", "wind", "fire", "gold",
        "iron", "milk", "rice", "salt", "ship", "star", "moon", "king", "city", "door", "book",
    ]

    /// `tokens` random words, each `" word"` (= one simulator token).
    public static func text(tokens: Int, rng: inout SeededRNG) -> String {
        var s = ""
        s.reserveCapacity(tokens * 5)
        for _ in 0..<max(0, tokens) {
            s += " "
            s += words[Int(rng.next() % UInt64(words.count))]
        }
        return s
    }
}

/// SplitMix64: small seedable PRNG for reproducible workloads.
public struct SeededRNG: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }
    /// Exponential with the given rate.
    public mutating func exponential(rate: Double) -> Double { -log(1 - nextDouble()) / rate }
}

/// One message of a chat conversation.
public struct Message: Sendable, Equatable {
    public var role: String
    public var content: String
}

/// One request ready to send.
public struct PlannedRequest: Sendable {
    /// Sequence number in dispatch order.
    public var index: Int
    public var group: Int
    /// Conversation turn (0-based; multi-turn only).
    public var turn: Int
    public var body: String
}

/// Hands out requests in a seeded random order that interleaves groups; for multi-turn it only
/// hands out a conversation's next turn once its previous turn completed.
public actor WorkSource {
    let config: LoadConfig
    private var rng: SeededRNG
    // static workloads
    private var planned: [PlannedRequest] = []
    private var cursor = 0
    // multi-turn
    private var systems: [String] = []
    private var transcripts: [[Message]] = []
    private var turnOf: [Int] = []
    private var inFlight: Set<Int> = []
    private var order: [Int] = []
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var issued = 0

    public init(config: LoadConfig) {
        self.config = config
        var rng = SeededRNG(seed: config.seed)
        let n = config.totalRequests
        let perGroup = max(config.promptsPerGroup, (n + config.groups - 1) / config.groups)
        var planned: [PlannedRequest] = []
        var systems: [String] = []
        var order: [Int] = []
        switch config.workload {
        case .sharedPrefix:
            systems = (0..<config.groups).map { _ in LoadText.text(tokens: config.systemPromptTokens, rng: &rng) }
            var slots: [(Int, Int)] = []
            for g in 0..<config.groups { for q in 0..<perGroup { slots.append((g, q)) } }
            slots.shuffle(using: &rng)
            slots = Array(slots.prefix(n))
            for (i, slot) in slots.enumerated() {
                let question = LoadText.text(tokens: config.questionTokens, rng: &rng)
                let messages = [Message(role: "system", content: systems[slot.0]), Message(role: "user", content: question)]
                planned.append(PlannedRequest(index: i, group: slot.0, turn: 0, body: Self.body(config: config, messages: messages)))
            }
        case .random:
            let base = config.systemPromptTokens + config.questionTokens
            for i in 0..<n {
                let lo = max(1, base / 2)
                let hi = max(lo, base + base / 2)
                let len = lo + Int(rng.next() % UInt64(hi - lo + 1))
                let text = LoadText.text(tokens: len, rng: &rng)
                planned.append(PlannedRequest(index: i, group: i % config.groups, turn: 0,
                                              body: Self.body(config: config, messages: [Message(role: "user", content: text)])))
            }
        case .multiTurn:
            systems = (0..<config.groups).map { _ in LoadText.text(tokens: config.systemPromptTokens, rng: &rng) }
            var o: [Int] = []
            for g in 0..<config.groups { o += Array(repeating: g, count: perGroup) }
            o.shuffle(using: &rng)
            order = Array(o.prefix(n))
        }
        self.rng = rng
        self.planned = planned
        self.systems = systems
        self.order = order
        if config.workload == .multiTurn {
            transcripts = systems.map { [Message(role: "system", content: $0)] }
            turnOf = Array(repeating: 0, count: config.groups)
        }
    }

    /// JSON body for `messages` (for the completions API the prompt is the concatenation of the
    /// message contents, so prefix sharing is the same).
    static func body(config: LoadConfig, messages: [Message]) -> String {
        var obj: [String: Any] = [
            "model": config.model, "max_tokens": config.outputTokens, "temperature": 0, "ignore_eos": true,
            "stream": config.stream,
        ]
        if config.stream { obj["stream_options"] = ["include_usage": true] }
        switch config.api {
        case .completions:
            obj["prompt"] = messages.map(\.content).joined()
        case .chat:
            obj["messages"] = messages.map { ["role": $0.role, "content": $0.content] }
        }
        let data = try! JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// Next request, or nil when the workload is exhausted. May wait (multi-turn) until a
    /// conversation becomes ready.
    public func next() async -> PlannedRequest? {
        if config.workload != .multiTurn {
            guard cursor < planned.count else { return nil }
            defer { cursor += 1 }
            return planned[cursor]
        }
        while true {
            if order.isEmpty { return nil }
            if let pos = order.firstIndex(where: { !inFlight.contains($0) }) {
                let g = order.remove(at: pos)
                inFlight.insert(g)
                let question = LoadText.text(tokens: config.questionTokens, rng: &rng)
                transcripts[g].append(Message(role: "user", content: question))
                let req = PlannedRequest(index: issued, group: g, turn: turnOf[g], body: Self.body(config: config, messages: transcripts[g]))
                issued += 1
                turnOf[g] += 1
                return req
            }
            await withCheckedContinuation { waiters.append($0) }
        }
    }

    /// Report a finished request; `answer` is the generated text (multi-turn appends it).
    public func complete(_ req: PlannedRequest, answer: String?) {
        guard config.workload == .multiTurn else { return }
        // A failed turn still advances the conversation with a placeholder answer so that the
        // next turn's prefix stays consistent.
        transcripts[req.group].append(Message(role: "assistant", content: answer ?? " no"))
        inFlight.remove(req.group)
        let w = waiters
        waiters.removeAll()
        for c in w { c.resume() }
    }

    /// Planned requests of the static workloads (for tests).
    public func plannedRequests() -> [PlannedRequest] { planned }
}
