import Yams

/// A configuration error; `line` (1-based) names where in the YAML it is.
public struct PickerConfigError: Error, CustomStringConvertible, Equatable {
    public var line: Int?
    public var message: String

    public init(line: Int?, _ message: String) {
        self.line = line
        self.message = message
    }

    public var description: String { line.map { "line \($0): \(message)" } ?? message }
}

public typealias PluginParameterError = PickerConfigError

/// Strict typed reading of a YAML mapping: every key must be read (or explicitly ignored) before
/// `finish()`, which reports the first unknown key with its line. Used for the top level, nested blocks
/// and plugin parameters.
public final class ConfigReader {
    public let node: Node?
    /// What is being read, for messages (e.g. `plugin 'x' (queue-scorer) parameters`).
    public let context: String
    private var used: Set<String> = []
    private let pairs: [(key: String, keyNode: Node, value: Node)]

    public init(_ node: Node?, context: String) throws(PickerConfigError) {
        self.node = node
        self.context = context
        var p: [(String, Node, Node)] = []
        if let node {
            switch node {
            case .mapping(let m):
                var seen: Set<String> = []
                for (k, v) in m {
                    guard let ks = k.scalar?.string else {
                        throw PickerConfigError(line: k.mark?.line, "\(context): keys must be strings")
                    }
                    if !seen.insert(ks).inserted {
                        throw PickerConfigError(line: k.mark?.line, "\(context): duplicate key '\(ks)'")
                    }
                    p.append((ks, k, v))
                }
            case .scalar(let s) where s.style == .plain && (s.string.isEmpty || s.string == "null" || s.string == "~"):
                break   // `parameters:` with nothing / null
            default:
                throw PickerConfigError(line: node.mark?.line, "\(context): expected a mapping")
            }
        }
        pairs = p.map { (key: $0.0, keyNode: $0.1, value: $0.2) }
    }

    /// A reader over a YAML text (tests, `--config-text`-style snippets).
    public convenience init(yaml: String, context: String) throws(PickerConfigError) {
        let node: Node?
        do { node = try Yams.compose(yaml: yaml) } catch {
            let e = YAMLErrorText.describe(error)
            throw PickerConfigError(line: e.line, "invalid YAML: \(e.message)")
        }
        try self.init(node, context: context)
    }

    public var line: Int? { node?.mark?.line }
    public var keys: [String] { pairs.map(\.key) }

    public func has(_ key: String) -> Bool { pairs.contains { $0.key == key } }

    /// The raw value node (marks the key used).
    public func value(_ key: String) -> Node? {
        guard let p = pairs.first(where: { $0.key == key }) else { return nil }
        used.insert(key)
        if case .scalar(let s) = p.value, s.style == .plain, s.string == "null" || s.string == "~" || s.string.isEmpty {
            return nil
        }
        return p.value
    }

    public func lineOf(_ key: String) -> Int? { pairs.first { $0.key == key }?.value.mark?.line ?? line }

    /// Accepts keys without interpreting them (documented as ignored).
    public func ignore(_ keys: String...) { for k in keys { used.insert(k) } }
    public func ignoreAll() { for p in pairs { used.insert(p.key) } }

    public func finish() throws(PickerConfigError) {
        for p in pairs where !used.contains(p.key) {
            throw PickerConfigError(line: p.keyNode.mark?.line, "\(context): unknown field '\(p.key)'")
        }
    }

    // MARK: typed values

    private func scalar(_ key: String, _ what: String) throws(PickerConfigError) -> Node.Scalar? {
        guard let v = value(key) else { return nil }
        guard case .scalar(let s) = v else {
            throw PickerConfigError(line: v.mark?.line, "\(context): '\(key)' must be \(what)")
        }
        return s
    }

    public func string(_ key: String) throws(PickerConfigError) -> String? {
        try scalar(key, "a string")?.string
    }

    public func string(_ key: String, default d: String) throws(PickerConfigError) -> String {
        try string(key) ?? d
    }

    public func double(_ key: String) throws(PickerConfigError) -> Double? {
        guard let s = try scalar(key, "a number") else { return nil }
        guard s.style == .plain, let d = Double(s.string), d.isFinite else {
            throw PickerConfigError(line: s.mark?.line, "\(context): '\(key)' must be a number, got '\(s.string)'")
        }
        return d
    }

    public func double(_ key: String, default d: Double) throws(PickerConfigError) -> Double { try double(key) ?? d }

    public func int(_ key: String) throws(PickerConfigError) -> Int? {
        guard let s = try scalar(key, "an integer") else { return nil }
        guard s.style == .plain, let i = Int(s.string) ?? Double(s.string).flatMap({ $0 == $0.rounded() && abs($0) < 1e15 ? Int($0) : nil }) else {
            throw PickerConfigError(line: s.mark?.line, "\(context): '\(key)' must be an integer, got '\(s.string)'")
        }
        return i
    }

    public func int(_ key: String, default d: Int) throws(PickerConfigError) -> Int { try int(key) ?? d }

    public func bool(_ key: String) throws(PickerConfigError) -> Bool? {
        guard let s = try scalar(key, "a boolean") else { return nil }
        switch (s.style == .plain ? s.string.lowercased() : "") {
        case "true": return true
        case "false": return false
        default: throw PickerConfigError(line: s.mark?.line, "\(context): '\(key)' must be true or false, got '\(s.string)'")
        }
    }

    public func bool(_ key: String, default d: Bool) throws(PickerConfigError) -> Bool { try bool(key) ?? d }

    /// A Go duration (`200ms`, `2s`, `1m30s`, `500us`) in seconds; a bare number is seconds.
    public func duration(_ key: String) throws(PickerConfigError) -> Double? {
        guard let s = try scalar(key, "a duration") else { return nil }
        guard let d = ConfigReader.parseDuration(s.string) else {
            throw PickerConfigError(line: s.mark?.line, "\(context): '\(key)' must be a duration like 200ms or 2s, got '\(s.string)'")
        }
        return d
    }

    public static func parseDuration(_ text: String) -> Double? {
        if let d = Double(text) { return d }
        var total = 0.0
        var rest = Substring(text)
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let num = rest.prefix { $0.isNumber || $0 == "." }
            guard !num.isEmpty, let v = Double(num) else { return nil }
            rest = rest.dropFirst(num.count)
            let unit = rest.prefix { $0.isLetter || $0 == "µ" }
            rest = rest.dropFirst(unit.count)
            switch unit {
            case "ns": total += v / 1e9
            case "us", "µs": total += v / 1e6
            case "ms": total += v / 1e3
            case "s": total += v
            case "m": total += v * 60
            case "h": total += v * 3600
            default: return nil
            }
        }
        return total
    }

    public func sequence(_ key: String) throws(PickerConfigError) -> [Node]? {
        guard let v = value(key) else { return nil }
        guard case .sequence(let s) = v else {
            throw PickerConfigError(line: v.mark?.line, "\(context): '\(key)' must be a list")
        }
        return Array(s)
    }

    public func stringList(_ key: String) throws(PickerConfigError) -> [String]? {
        guard let items = try sequence(key) else { return nil }
        var out: [String] = []
        for n in items {
            guard case .scalar(let s) = n else {
                throw PickerConfigError(line: n.mark?.line, "\(context): '\(key)' must be a list of strings")
            }
            out.append(s.string)
        }
        return out
    }

    public func stringMap(_ key: String) throws(PickerConfigError) -> [String: String]? {
        guard let v = value(key) else { return nil }
        guard case .mapping(let m) = v else {
            throw PickerConfigError(line: v.mark?.line, "\(context): '\(key)' must be a mapping of strings")
        }
        var out: [String: String] = [:]
        for (k, val) in m {
            guard let ks = k.scalar?.string, case .scalar(let vs) = val else {
                throw PickerConfigError(line: k.mark?.line, "\(context): '\(key)' must be a mapping of strings")
            }
            out[ks] = vs.string
        }
        return out
    }

    /// A nested strict reader for a mapping value.
    public func object(_ key: String) throws(PickerConfigError) -> ConfigReader? {
        guard let v = value(key) else { return nil }
        return try ConfigReader(v, context: "\(context).\(key)")
    }
}
