/// `header-based-testing-filter` (conformance) — keeps exactly the endpoints listed in request header
/// `test-epp-endpoint-selection` (comma list of `ip:port` or bare `ip` = any port; IPv6 `[addr]:port` or a
/// bare address), in header order. Without the header all candidates pass. No parameters.
///
/// The framework scheduler applies the same rule while building the candidate set (so conformance works
/// with any config); this plugin exists so configs that list it load and behave the same.
public final class HeaderBasedTestingFilter: SchedulingFilter {
    public static let header = "test-epp-endpoint-selection"
    public let typeName = "header-based-testing-filter"
    public let name: String

    public init(name: String = "header-based-testing-filter", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        try params?.finish()
    }

    public func filter(_ ctx: SchedulingContext, _ candidates: [Int]) -> [Int] {
        guard let value = ctx.header(HeaderBasedTestingFilter.header) else { return candidates }
        return HeaderBasedTestingFilter.select(value, candidates) { ctx.endpoints[$0] }
    }

    /// The listed endpoints among `candidates`, in header order (each at most once).
    static func select(_ value: String, _ candidates: [Int], _ endpoint: (Int) -> Endpoint) -> [Int] {
        var out: [Int] = []
        for raw in value.split(separator: ",") {
            var entry = Substring(raw.trimmingSpaces())
            if entry.isEmpty { continue }
            // "[v6]:port" or "[v6]" → compare host without brackets
            var port: Int? = nil
            var host = entry
            if entry.first == "[" {
                if let close = entry.firstIndex(of: "]") {
                    host = entry[entry.index(after: entry.startIndex)..<close]
                    let after = entry[entry.index(after: close)...]
                    if after.first == ":" { port = Int(after.dropFirst()) }
                }
            } else if entry.filter({ $0 == ":" }).count == 1, let colon = entry.firstIndex(of: ":") {
                host = entry[..<colon]
                port = Int(entry[entry.index(after: colon)...])
            }
            entry = host
            for c in candidates where !out.contains(c) {
                let s = endpoint(c).spec
                if s.address == entry && (port == nil || port == s.port) { out.append(c) }
            }
        }
        return out
    }
}
