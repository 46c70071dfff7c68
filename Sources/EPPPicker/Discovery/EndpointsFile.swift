// The static endpoints file of file discovery (scheduling.md §6).
//
// ```yaml
// endpoints:
// - name: vllm-0              # required, unique in file
//   namespace: default        # optional, default "default"
//   address: "10.0.0.1"       # required, literal IPv4 only
//   port: "8000"              # required, 1..65535 (string or integer)
//   labels:                   # optional map of strings
//     llm-d.ai/role: decode
// ```
// YAML or JSON (JSON is parsed as YAML). File ≤ 1 MiB.

import Foundation
import Yams

/// One problem found in an endpoints file.
public struct EndpointsFileProblem: Sendable, Equatable, CustomStringConvertible {
    /// Index in `endpoints` (nil for file-level problems).
    public var index: Int?
    /// Entry name when known.
    public var name: String?
    /// Offending field (`name`, `address`, `port`, `namespace`, `labels`, a key…).
    public var field: String
    public var reason: String

    public init(index: Int?, name: String?, field: String, reason: String) {
        self.index = index
        self.name = name
        self.field = field
        self.reason = reason
    }

    public var description: String {
        var s = ""
        if let i = index {
            s = "endpoints[\(i)]"
            if let n = name { s += " (\(n))" }
            s += ": "
        }
        return s + "\(field): \(reason)"
    }
}

/// An endpoints file that can't be used; `problems` lists every problem found.
public struct EndpointsFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var problems: [EndpointsFileProblem]
    public var path: String?

    public init(problems: [EndpointsFileProblem], path: String? = nil) {
        self.problems = problems
        self.path = path
    }

    public var description: String {
        let head = "invalid endpoints file" + (path.map { " \($0)" } ?? "")
        if problems.count == 1 { return head + ": " + problems[0].description }
        return head + " (\(problems.count) problems):\n" + problems.map { "  - \($0.description)" }.joined(separator: "\n")
    }
}

public enum EndpointsFile {
    /// Maximum file size (1 MiB).
    public static let maxBytes = 1 << 20

    /// Reads and parses `path` strictly (startup): any problem ⇒ throws
    /// `EndpointsFileError` listing all problems.
    public static func load(path: String) throws -> [EndpointSpec] {
        let text = try readText(path: path)
        do {
            return try parse(text: text)
        } catch var e as EndpointsFileError {
            e.path = path
            throw e
        }
    }

    /// Reads `path` leniently (reload): invalid entries are skipped and
    /// reported; an unreadable, oversized or structurally broken file throws.
    public static func loadSkippingInvalid(path: String) throws -> (endpoints: [EndpointSpec], problems: [EndpointsFileProblem]) {
        let text = try readText(path: path)
        do {
            return try parseSkippingInvalid(text: text)
        } catch var e as EndpointsFileError {
            e.path = path
            throw e
        }
    }

    /// Strict parse: all problems are reported together in one error.
    public static func parse(text: String) throws -> [EndpointSpec] {
        let (endpoints, problems) = try parseSkippingInvalid(text: text)
        if !problems.isEmpty { throw EndpointsFileError(problems: problems) }
        return endpoints
    }

    /// Lenient parse: returns the valid entries and the problems of the
    /// others. Throws only when the document itself is unusable (not
    /// YAML/JSON, too large, not a mapping, `endpoints` missing or not a list)
    /// — unknown top-level keys are reported as problems.
    /// Of several entries with the same name, the first valid one is kept.
    public static func parseSkippingInvalid(text: String) throws -> (endpoints: [EndpointSpec], problems: [EndpointsFileProblem]) {
        if text.utf8.count > maxBytes {
            throw EndpointsFileError(problems: [fileProblem("file is \(text.utf8.count) bytes, more than the \(maxBytes)-byte limit")])
        }
        let root = try compose(text)
        guard let root else {
            throw EndpointsFileError(problems: [fileProblem("file is empty; expected a mapping with key \"endpoints\"")])
        }
        guard case .mapping(let top) = root else {
            throw EndpointsFileError(problems: [fileProblem("top level must be a mapping with key \"endpoints\"")])
        }
        var problems: [EndpointsFileProblem] = []
        var list: Node.Sequence? = nil
        var sawEndpoints = false
        for (k, v) in top {
            let key = k.scalar?.string ?? "<non-scalar key>"
            if key == "endpoints" {
                sawEndpoints = true
                switch v {
                case .sequence(let s): list = s
                case .scalar where isNull(v): list = Node.Sequence([])
                default:
                    throw EndpointsFileError(problems: [EndpointsFileProblem(index: nil, name: nil, field: "endpoints", reason: "must be a list")])
                }
            } else {
                problems.append(EndpointsFileProblem(index: nil, name: nil, field: key, reason: "unknown top-level key (expected only \"endpoints\")"))
            }
        }
        guard sawEndpoints, let entries = list else {
            throw EndpointsFileError(problems: problems + [EndpointsFileProblem(index: nil, name: nil, field: "endpoints", reason: "missing")])
        }

        var result: [EndpointSpec] = []
        var seen: [String: Int] = [:]  // name -> first index
        for (i, node) in entries.enumerated() {
            switch parseEntry(node, index: i) {
            case .success(let spec):
                if let first = seen[spec.name] {
                    problems.append(EndpointsFileProblem(index: i, name: spec.name, field: "name", reason: "duplicate name (first used by endpoints[\(first)])"))
                } else {
                    seen[spec.name] = i
                    result.append(spec)
                }
            case .failure(let entryProblems):
                problems.append(contentsOf: entryProblems.problems)
            }
        }
        return (result, problems)
    }

    // MARK: - internals

    private static func fileProblem(_ reason: String) -> EndpointsFileProblem {
        EndpointsFileProblem(index: nil, name: nil, field: "file", reason: reason)
    }

    private static func readText(path: String) throws -> String {
        guard let fh = FileHandle(forReadingAtPath: path) else {
            throw EndpointsFileError(problems: [fileProblem("cannot open \(path)")], path: path)
        }
        defer { try? fh.close() }
        let data: Data
        do {
            data = try fh.read(upToCount: maxBytes + 1) ?? Data()
        } catch {
            throw EndpointsFileError(problems: [fileProblem("cannot read: \(error)")], path: path)
        }
        if data.count > maxBytes {
            throw EndpointsFileError(problems: [fileProblem("file is larger than the \(maxBytes)-byte limit")], path: path)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw EndpointsFileError(problems: [fileProblem("not valid UTF-8")], path: path)
        }
        return text
    }

    private static func compose(_ text: String) throws -> Node? {
        var source = text
        // JSON can't contain raw tabs inside strings, so tabs are only
        // whitespace there; libyaml rejects some tab placements.
        if let first = text.first(where: { !$0.isWhitespace }), first == "{" || first == "[" {
            source = text.replacingOccurrences(of: "\t", with: " ")
        }
        do {
            return try Yams.compose(yaml: source)
        } catch {
            throw EndpointsFileError(problems: [fileProblem("not valid YAML/JSON: \(YAMLErrorText.describe(error).message)")])
        }
    }

    private struct EntryProblems: Error { var problems: [EndpointsFileProblem] }

    private static func parseEntry(_ node: Node, index i: Int) -> Result<EndpointSpec, EntryProblems> {
        guard case .mapping(let m) = node else {
            return .failure(EntryProblems(problems: [EndpointsFileProblem(index: i, name: nil, field: "entry", reason: "must be a mapping")]))
        }
        var problems: [EndpointsFileProblem] = []
        var name: String? = nil
        var namespace = "default"
        var address: String? = nil
        var port: Int? = nil
        var labels: [String: String] = [:]
        var sawAddress = false, sawPort = false
        // name first, so other problems can mention it
        for (k, v) in m where k.scalar?.string == "name" {
            if let s = scalarString(v), !s.isEmpty { name = s }
        }
        func problem(_ field: String, _ reason: String) {
            problems.append(EndpointsFileProblem(index: i, name: name, field: field, reason: reason))
        }
        for (k, v) in m {
            let key = k.scalar?.string ?? "<non-scalar key>"
            switch key {
            case "name":
                if name == nil { problem("name", "must be a non-empty string") }
            case "namespace":
                if let s = scalarString(v), !s.isEmpty {
                    namespace = s
                } else if !isNull(v) {
                    problem("namespace", "must be a non-empty string")
                }
            case "address":
                sawAddress = true
                guard let s = scalarString(v), !s.isEmpty else {
                    problem("address", "must be a non-empty string")
                    continue
                }
                if isIPv4Literal(s) {
                    address = s
                } else if s.contains(":") {
                    problem("address", "\"\(s)\" is not an IPv4 literal (IPv6 is not supported)")
                } else {
                    problem("address", "\"\(s)\" is not an IPv4 literal (hostnames are not supported)")
                }
            case "port":
                sawPort = true
                guard let s = scalarString(v), !s.isEmpty else {
                    problem("port", "must be a number or string holding 1..65535")
                    continue
                }
                if let p = parsePort(s) {
                    port = p
                } else {
                    problem("port", "\"\(s)\" is not a port number in 1..65535")
                }
            case "labels":
                switch v {
                case .mapping(let lm):
                    for (lk, lv) in lm {
                        guard let ks = lk.scalar?.string, !ks.isEmpty else {
                            problem("labels", "label keys must be non-empty strings")
                            continue
                        }
                        guard let vs = scalarString(lv) else {
                            problem("labels.\(ks)", "label values must be strings")
                            continue
                        }
                        labels[ks] = isNull(lv) ? "" : vs
                    }
                case .scalar where isNull(v):
                    break
                default:
                    problem("labels", "must be a mapping of strings")
                }
            default:
                problem(key, "unknown field")
            }
        }
        if !m.contains(where: { $0.0.scalar?.string == "name" }) { problem("name", "missing") }
        if !sawAddress { problem("address", "missing") }
        if !sawPort { problem("port", "missing") }
        if let name, let address, let port, problems.isEmpty {
            return .success(EndpointSpec(name: name, namespace: namespace, address: address, port: port, labels: labels))
        }
        return .failure(EntryProblems(problems: problems))
    }

    private static func scalarString(_ n: Node) -> String? {
        guard case .scalar(let s) = n else { return nil }
        return s.string
    }

    private static func isNull(_ n: Node) -> Bool {
        guard case .scalar(let s) = n else { return false }
        if s.style == .singleQuoted || s.style == .doubleQuoted { return false }
        return s.string.isEmpty || s.string == "~" || s.string == "null" || s.string == "Null" || s.string == "NULL"
    }

    /// Decimal digits only (no sign, no spaces), value 1…65535.
    static func parsePort(_ s: String) -> Int? {
        guard !s.isEmpty, s.utf8.count <= 5, s.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let v = Int(s), v >= 1, v <= 65535
        else { return nil }
        return v
    }
}
