import EPPLock

/// `no-hit-lru-scorer` — spreads cold requests (no endpoint has a prefix match) over the endpoints used
/// least recently. Warm request (any candidate has matchBlocks > 0) ⇒ 0.5 for all. Cold: N candidates;
/// N = 1 ⇒ 1.0; endpoints never used (not in the LRU) come first in candidate order, score `1 − i/(N−1)`;
/// used endpoints follow, oldest first: rank = neverUsedCount + lruPos, score `max(0, 1 − rank/(N−1))`.
/// After the pick of a cold request the primary endpoint (and the prefill endpoint) become most recent.
/// Parameters: `prefixPluginType`/`prefixPluginName` (accepted; the framework has one prefix producer),
/// `lruSize` (1024). The LRU is shared by all loops (mutex) and keyed by namespaced name.
public final class NoHitLRUScorer: SchedulingScorer, PreRequestPlugin, ConsumesPrefixInfo {
    public let typeName = "no-hit-lru-scorer"
    public let name: String
    public let lruSize: Int
    private struct State {
        var tick: UInt64 = 0
        var lastUse: [String: UInt64] = [:]
    }
    private let state = Lock(State())

    public init(name: String = "no-hit-lru-scorer", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        let n = try params?.int("lruSize") ?? 1024
        lruSize = n <= 0 ? 1024 : n
        _ = try params?.string("prefixPluginType")
        _ = try params?.string("prefixPluginName")
        try params?.finish()
    }

    private func isWarm(_ ctx: SchedulingContext) -> Bool {
        guard ctx.hasPrefixInfo else { return false }
        for m in ctx.prefixMatches where m > 0 { return true }
        return false
    }

    public func score(_ ctx: SchedulingContext, _ candidates: [Int], into scores: inout [Double]) {
        let n = candidates.count
        guard n > 0 else { return }
        if isWarm(ctx) { for k in 0..<n { scores[k] = 0.5 }; return }
        if n == 1 { scores[0] = 1; return }
        let uses: [UInt64?] = state.withLock { s in candidates.map { s.lastUse[ctx.endpoints[$0].spec.namespacedName] } }
        var rank = 0
        for k in 0..<n where uses[k] == nil {
            scores[k] = max(0, 1 - Double(rank) / Double(n - 1))
            rank += 1
        }
        let used = (0..<n).filter { uses[$0] != nil }.sorted { uses[$0]! < uses[$1]! }
        for k in used {
            scores[k] = max(0, 1 - Double(rank) / Double(n - 1))
            rank += 1
        }
    }

    public func preRequest(_ ctx: SchedulingContext, primary: Endpoint, prefill: Endpoint?) {
        guard !isWarm(ctx) else { return }
        state.withLock { s in
            for e in [primary, prefill].compactMap({ $0 }) {
                s.tick += 1
                s.lastUse[e.spec.namespacedName] = s.tick
            }
            if s.lastUse.count > lruSize, let oldest = s.lastUse.min(by: { $0.value < $1.value }) {
                s.lastUse[oldest.key] = nil
            }
        }
    }
}
