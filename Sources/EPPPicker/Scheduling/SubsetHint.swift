import EPPProtobuf

/// The proxy's candidate restriction, `envoy.lb.subset_hint` / `x-gateway-destination-endpoint-subset`
/// (epp-protocol.md §5). Accepts a list of strings or one comma-separated string; entries are `ip:port`
/// (exact) or a bare `ip` (any port).
public struct SubsetHint: Sendable, Equatable {
    public static let namespace = "envoy.lb.subset_hint"
    public static let key = "x-gateway-destination-endpoint-subset"

    public var entries: [String]

    /// nil when the hint is absent (all endpoints eligible).
    public static func from(metadata: [(String, ProtoStruct)]) -> SubsetHint? {
        var hintStruct: ProtoStruct?
        for (ns, s) in metadata where ns == namespace { hintStruct = s }
        guard let value = hintStruct?[key] else { return nil }
        var entries: [String] = []
        switch value {
        case .list(let items):
            for case .string(let s) in items { entries.append(contentsOf: split(s)) }
        case .string(let s):
            entries = split(s)
        default:
            return nil
        }
        return SubsetHint(entries: entries)
    }

    private static func split(_ s: String) -> [String] {
        s.split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
    }

    /// Whether an endpoint `ip:port` is allowed.
    public func allows(address: String, port: Int, hostPort: String) -> Bool {
        for e in entries {
            if e == hostPort || e == address { return true }
        }
        return false
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        var s = self[...]
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
