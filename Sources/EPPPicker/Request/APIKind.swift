// API kind detection from the request path (epp-protocol.md §6.1).

/// The OpenAI-compatible API a request targets, decided by the path suffix.
public enum APIKind: String, Sendable, Hashable, CaseIterable {
    case completions
    case chatCompletions
    case responses
    case embeddings
    case conversations

    /// Path used when no path header is present (reference behaviour).
    public static let defaultPath = "/v1/completions"

    /// Kind by path **suffix** in the order of epp-protocol.md §6.1:
    /// `/conversations`, `/responses`, `/chat/completions`, `/completions`,
    /// `/embeddings`, anything else ⇒ completions. The query string (`?…`) and
    /// a fragment (`#…`) are stripped first (the reference does not; §13.9).
    public static func from(path: String) -> APIKind {
        var utf8 = Substring(path).utf8[...]
        if let q = utf8.firstIndex(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) {
            utf8 = utf8[utf8.startIndex..<q]
        }
        if hasSuffix(utf8, "/conversations") { return .conversations }
        if hasSuffix(utf8, "/responses") { return .responses }
        if hasSuffix(utf8, "/chat/completions") { return .chatCompletions }
        if hasSuffix(utf8, "/completions") { return .completions }
        if hasSuffix(utf8, "/embeddings") { return .embeddings }
        return .completions
    }

    /// The request path from headers in reference order: `:path`, then
    /// `x-original-path`, then `x-forwarded-path` (first non-empty one), else
    /// `/v1/completions`. `header` looks a header up by its lower-case name.
    public static func requestPath(header: (String) -> String?) -> String {
        for name in [":path", "x-original-path", "x-forwarded-path"] {
            if let v = header(name), !v.isEmpty { return v }
        }
        return defaultPath
    }

    /// Kind from request headers (see `requestPath(header:)`).
    public static func from(header: (String) -> String?) -> APIKind {
        from(path: requestPath(header: header))
    }

    /// Kind from a header dictionary keyed by lower-case names.
    public static func from(headers: [String: String]) -> APIKind {
        from(header: { headers[$0] })
    }

    private static func hasSuffix(_ s: Substring.UTF8View.SubSequence, _ suffix: StaticString) -> Bool {
        let n = suffix.utf8CodeUnitCount
        guard s.count >= n else { return false }
        let start = s.index(s.endIndex, offsetBy: -n)
        return suffix.withUTF8Buffer { sfx in
            var i = start
            for b in sfx {
                if s[i] != b { return false }
                i = s.index(after: i)
            }
            return true
        }
    }
}
