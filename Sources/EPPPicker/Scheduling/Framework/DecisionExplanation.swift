/// The `x-epp-decision` text: per profile, the chosen endpoint and the runner-up with their totals and
/// each scorer's clamped score and weight. Compact, header-safe ASCII (plugin names are sanitised):
///
///     default: pick 10.0.0.2:8000 total=4.650 [queue-scorer=0.500x2 kv-cache-utilization-scorer=0.700x2 prefix-cache-scorer=0.750x3]; runner-up 10.0.0.3:8000 total=4.600 [...]
///
/// Profiles are separated by ` | `; a profile with a single candidate says `runner-up none`; the prefix
/// match (`prefix=match/total`) is appended when known.
public enum DecisionExplanation {
    public static func render(_ ctx: SchedulingContext, _ result: ProfileHandlerResult) -> String {
        var out = ""
        out.reserveCapacity(256)
        let profiles: [ProfileResult] = result.all
        for (pi, r) in profiles.enumerated() {
            if pi > 0 { out += " | " }
            out += sanitize(r.profileName)
            out += ":"
            guard let chosen = r.targets.first, let ci = r.scored.firstIndex(of: chosen) else {
                out += " pick none"
                continue
            }
            out += " pick "
            describe(ctx, r, ci, into: &out)
            var runner: Int? = nil
            for k in r.scored.indices where k != ci {
                if runner == nil || r.totals[k] > r.totals[runner!] { runner = k }
            }
            out += "; runner-up "
            if let runner { describe(ctx, r, runner, into: &out) } else { out += "none" }
        }
        if ctx.hasPrefixInfo { out += " | blocks=\(ctx.prefixTotalBlocks)" }
        return out
    }

    private static func describe(_ ctx: SchedulingContext, _ r: ProfileResult, _ k: Int, into out: inout String) {
        let e = r.scored[k]
        out += sanitize(ctx.endpoints[e].hostPort)
        out += " total="
        out += fixed(r.totals[k])
        out += " ["
        // scorer names/weights come from the profile (same order as perScorer)
        let profileScorers = scorerLabels(ctx, r)
        for (si, row) in r.perScorer.enumerated() {
            if si > 0 { out += " " }
            out += si < profileScorers.count ? profileScorers[si].name : "scorer\(si)"
            out += "="
            out += fixed(row[k])
            out += "x"
            out += si < profileScorers.count ? fixed(profileScorers[si].weight, trim: true) : "?"
        }
        out += "]"
        if ctx.hasPrefixInfo && e < ctx.prefixMatches.count {
            out += " prefix=\(ctx.prefixMatches[e])/\(ctx.prefixTotalBlocks)"
        }
    }

    private static func scorerLabels(_ ctx: SchedulingContext, _ r: ProfileResult) -> [(name: String, weight: Double)] {
        r.scorerLabels
    }

    /// Printable ASCII only (no spaces, commas, CR/LF); others become `_`.
    static func sanitize(_ s: String) -> String {
        String(decoding: s.utf8.map { ($0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ";") && $0 != UInt8(ascii: "|")) ? $0 : UInt8(ascii: "_") },
               as: UTF8.self)
    }

    /// `x.yyy` with three decimals (no Foundation); `trim` drops trailing zeros (`2`, `0.5`).
    static func fixed(_ v: Double, trim: Bool = false) -> String {
        guard v.isFinite else { return "nan" }
        let neg = v < 0
        let scaled = (abs(v) * 1000).rounded()
        guard scaled < 9e15 else { return neg ? "-big" : "big" }
        let n = Int(scaled)
        var frac = String(n % 1000)
        while frac.count < 3 { frac = "0" + frac }
        var s = (neg ? "-" : "") + String(n / 1000)
        if trim {
            while frac.hasSuffix("0") { frac.removeLast() }
            if !frac.isEmpty { s += "." + frac }
        } else {
            s += "." + frac
        }
        return s
    }
}
