// The few Kubernetes API objects discovery reads (Pod, InferencePool, Status, lists and watch events), decoded
// from JSON with Foundation (not the request path), and the pod → endpoints mapping (scheduling.md §1, §7):
// one endpoint per (ready pod, target port), named `<pod>` for one port and `<pod>-rank-<i>` for several.

import Foundation

/// Malformed API data (a list or watch line that isn't what the API server sends).
public struct KubernetesDecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// `metadata` fields discovery uses.
public struct KubernetesObjectMeta: Sendable, Equatable {
    public var name: String
    public var namespace: String
    public var resourceVersion: String
    public var labels: [String: String]
    public var annotations: [String: String]
    public var deleting: Bool

    static func decode(_ obj: [String: Any]) throws -> KubernetesObjectMeta {
        guard let meta = obj["metadata"] as? [String: Any] else { throw KubernetesDecodeError("object without metadata") }
        guard let name = meta["name"] as? String, !name.isEmpty else { throw KubernetesDecodeError("object without metadata.name") }
        return KubernetesObjectMeta(
            name: name,
            namespace: meta["namespace"] as? String ?? "",
            resourceVersion: meta["resourceVersion"] as? String ?? "",
            labels: stringMap(meta["labels"]),
            annotations: stringMap(meta["annotations"]),
            deleting: meta["deletionTimestamp"] is String)
    }
}

/// What discovery needs of a Pod.
public struct KubernetesPod: Sendable, Equatable {
    public var meta: KubernetesObjectMeta
    /// An IPv4 pod IP (`status.podIP`, else the first IPv4 of `status.podIPs`); nil if none is assigned.
    public var ipv4: String?
    /// `status.conditions[type=Ready].status == "True"`.
    public var ready: Bool

    public init(meta: KubernetesObjectMeta, ipv4: String?, ready: Bool) {
        self.meta = meta
        self.ipv4 = ipv4
        self.ready = ready
    }

    public static func decode(_ obj: [String: Any]) throws -> KubernetesPod {
        let meta = try KubernetesObjectMeta.decode(obj)
        let status = obj["status"] as? [String: Any] ?? [:]
        var ips: [String] = []
        if let ip = status["podIP"] as? String { ips.append(ip) }
        for case let e as [String: Any] in status["podIPs"] as? [Any] ?? [] {
            if let ip = e["ip"] as? String { ips.append(ip) }
        }
        var ready = false
        for case let c as [String: Any] in status["conditions"] as? [Any] ?? [] where c["type"] as? String == "Ready" {
            ready = c["status"] as? String == "True"
        }
        return KubernetesPod(meta: meta, ipv4: ips.first(where: isIPv4Literal), ready: ready)
    }

    /// Serves traffic: Ready, has an IP, not being deleted (scheduling.md §8 "Endpoint readiness").
    public var isServing: Bool { ready && ipv4 != nil && !meta.deleting }

    /// `inference.networking.k8s.io/active-ports` (`"8000,8001"`): when present, only these target ports get
    /// endpoints. nil when absent or unparsable (then every target port is active).
    public var activePorts: Set<Int>? {
        guard let v = meta.annotations[KubernetesPod.activePortsAnnotation] else { return nil }
        var ports = Set<Int>()
        for part in v.split(separator: ",") {
            guard let p = Int(part.trimmingCharacters(in: .whitespaces)), (1...65535).contains(p) else { return nil }
            ports.insert(p)
        }
        return ports
    }

    public static let activePortsAnnotation = "inference.networking.k8s.io/active-ports"
}

/// `inference.networking.k8s.io/v1` InferencePool: the parts discovery uses.
public struct InferencePoolSpec: Sendable, Equatable {
    public var selector: [String: String]
    public var targetPorts: [Int]

    public init(selector: [String: String], targetPorts: [Int]) {
        self.selector = selector
        self.targetPorts = targetPorts
    }

    /// Decodes and validates `spec.selector.matchLabels` (non-empty) and `spec.targetPorts[].number` (1–8 distinct
    /// ports). A pool that fails validation must not route anywhere, so the caller treats it as absent.
    public static func decode(_ obj: [String: Any]) throws -> InferencePoolSpec {
        guard let spec = obj["spec"] as? [String: Any] else { throw KubernetesDecodeError("InferencePool without spec") }
        guard let sel = spec["selector"] as? [String: Any] else { throw KubernetesDecodeError("InferencePool spec.selector is missing") }
        if let exprs = sel["matchExpressions"] as? [Any], !exprs.isEmpty {
            throw KubernetesDecodeError("InferencePool spec.selector.matchExpressions is not supported (use matchLabels)")
        }
        let labels = stringMap(sel["matchLabels"])
        guard !labels.isEmpty else { throw KubernetesDecodeError("InferencePool spec.selector.matchLabels is empty") }
        guard let tps = spec["targetPorts"] as? [Any], !tps.isEmpty else {
            throw KubernetesDecodeError("InferencePool spec.targetPorts is missing or empty")
        }
        var ports: [Int] = []
        for case let tp as [String: Any] in tps {
            guard let n = jsonInt(tp["number"]), (1...65535).contains(n) else {
                throw KubernetesDecodeError("InferencePool spec.targetPorts[].number must be 1..65535")
            }
            guard !ports.contains(n) else { throw KubernetesDecodeError("InferencePool spec.targetPorts has port \(n) twice") }
            ports.append(n)
        }
        guard ports.count == tps.count, ports.count <= 8 else {
            throw KubernetesDecodeError("InferencePool spec.targetPorts must hold 1..8 entries with a number")
        }
        return InferencePoolSpec(selector: labels, targetPorts: ports)
    }
}

/// `metav1.Status` (error bodies and watch ERROR events).
public struct KubernetesStatus: Sendable, Equatable {
    public var code: Int
    public var reason: String
    public var message: String

    public static func decode(_ obj: [String: Any]) -> KubernetesStatus {
        KubernetesStatus(code: jsonInt(obj["code"]) ?? 0, reason: obj["reason"] as? String ?? "",
                         message: obj["message"] as? String ?? "")
    }

    /// Decodes an HTTP error body; nil if it isn't a Status.
    public static func decode(body: [UInt8]) -> KubernetesStatus? {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              obj["kind"] as? String == "Status" else { return nil }
        return decode(obj)
    }

    /// The resource version asked for is older than the server keeps: relist.
    public var isExpired: Bool { code == 410 || reason == "Expired" || reason == "Gone" }
}

/// One page of a list response.
public struct KubernetesListPage: @unchecked Sendable {
    public var items: [[String: Any]]
    public var resourceVersion: String
    /// `metadata.continue`: non-empty ⇒ more pages.
    public var continueToken: String

    public static func decode(body: [UInt8]) throws -> KubernetesListPage {
        let obj: Any
        do {
            obj = try JSONSerialization.jsonObject(with: Data(body))
        } catch {
            throw KubernetesDecodeError("list response is not JSON")
        }
        guard let list = obj as? [String: Any], let items = list["items"] as? [Any] ?? (list["items"] is NSNull ? [] : nil) else {
            throw KubernetesDecodeError("list response without items")
        }
        let meta = list["metadata"] as? [String: Any] ?? [:]
        guard let rv = meta["resourceVersion"] as? String, !rv.isEmpty else {
            throw KubernetesDecodeError("list response without metadata.resourceVersion")
        }
        return KubernetesListPage(items: items.compactMap { $0 as? [String: Any] }, resourceVersion: rv,
                                  continueToken: meta["continue"] as? String ?? "")
    }
}

/// One newline-delimited event of a watch stream.
public struct KubernetesWatchEvent: @unchecked Sendable {
    public enum Kind: String, Sendable {
        case added = "ADDED", modified = "MODIFIED", deleted = "DELETED", bookmark = "BOOKMARK", error = "ERROR"
    }
    public var kind: Kind
    public var object: [String: Any]

    /// Decodes one line (without its newline).
    public static func decode(line: some Collection<UInt8>) throws -> KubernetesWatchEvent {
        let obj: Any
        do {
            obj = try JSONSerialization.jsonObject(with: Data(line))
        } catch {
            throw KubernetesDecodeError("watch event is not JSON")
        }
        guard let ev = obj as? [String: Any], let t = ev["type"] as? String else {
            throw KubernetesDecodeError("watch event without type")
        }
        guard let kind = Kind(rawValue: t) else { throw KubernetesDecodeError("unknown watch event type '\(t)'") }
        guard let o = ev["object"] as? [String: Any] else { throw KubernetesDecodeError("\(t) watch event without object") }
        return KubernetesWatchEvent(kind: kind, object: o)
    }

    /// `metadata.resourceVersion` of the object (BOOKMARKs carry only this).
    public var resourceVersion: String? {
        (object["metadata"] as? [String: Any])?["resourceVersion"] as? String
    }
}

/// Splits a byte stream into lines across arbitrary chunk boundaries (watch bodies arrive in HTTP chunks that need
/// not end at a newline). Owned by one watch on the discovery loop.
public struct KubernetesLineSplitter: Sendable {
    private var pending: [UInt8] = []
    public let maxLineBytes: Int

    public init(maxLineBytes: Int = 16 << 20) { self.maxLineBytes = maxLineBytes }

    /// Appends `bytes` and returns the complete, non-empty lines. Throws when one line exceeds `maxLineBytes`.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) throws -> [[UInt8]] {
        var lines: [[UInt8]] = []
        var start = 0
        for i in 0..<bytes.count where bytes[i] == UInt8(ascii: "\n") {
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<i]))
            if pending.last == UInt8(ascii: "\r") { pending.removeLast() }
            if !pending.isEmpty { lines.append(pending) }
            pending = []
            start = i + 1
        }
        pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start...]))
        if pending.count > maxLineBytes {
            pending = []
            throw KubernetesDecodeError("watch event longer than \(maxLineBytes) bytes")
        }
        return lines
    }

    public mutating func reset() { pending = [] }
}

/// An equality-based label selector (`k=v,k2=v2`), the form `--endpoint-selector` and InferencePool
/// `matchLabels` take.
public struct KubernetesLabelSelector: Sendable, Equatable, CustomStringConvertible {
    public var matchLabels: [String: String]

    public init(matchLabels: [String: String]) { self.matchLabels = matchLabels }

    /// Parses `k=v[,k=v…]` (`==` also accepted). Keys and values follow Kubernetes label syntax.
    public static func parse(_ text: String) throws -> KubernetesLabelSelector {
        var m: [String: String] = [:]
        for raw in text.split(separator: ",", omittingEmptySubsequences: false) {
            let part = raw.trimmingCharacters(in: .whitespaces)
            guard !part.isEmpty else { throw KubernetesConfigError("empty term in selector '\(text)'") }
            let kv: [Substring]
            if let r = part.range(of: "==") {
                kv = [part[..<r.lowerBound], part[r.upperBound...]]
            } else {
                kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            }
            guard kv.count == 2 else { throw KubernetesConfigError("selector term '\(part)' must be key=value") }
            let k = kv[0].trimmingCharacters(in: .whitespaces), v = kv[1].trimmingCharacters(in: .whitespaces)
            guard isLabelKey(k) else { throw KubernetesConfigError("selector key '\(k)' is not a valid label key") }
            guard isLabelValue(v) else { throw KubernetesConfigError("selector value '\(v)' for key '\(k)' is not a valid label value") }
            if let old = m[k], old != v { throw KubernetesConfigError("selector gives key '\(k)' two values") }
            m[k] = v
        }
        guard !m.isEmpty else { throw KubernetesConfigError("selector is empty") }
        return KubernetesLabelSelector(matchLabels: m)
    }

    public func matches(_ labels: [String: String]) -> Bool {
        matchLabels.allSatisfy { labels[$0.key] == $0.value }
    }

    /// The `labelSelector` query value, sorted so the same selector gives the same URL.
    public var description: String {
        matchLabels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }

    /// `[prefix/]name`: prefix a DNS subdomain ≤ 253, name ≤ 63 alphanumerics with `-_.` inside.
    static func isLabelKey(_ k: String) -> Bool {
        let parts = k.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let name = parts.last, isLabelValue(String(name)), !name.isEmpty else { return false }
        if parts.count == 2 {
            let prefix = parts[0]
            guard !prefix.isEmpty, prefix.count <= 253 else { return false }
            for label in prefix.split(separator: ".", omittingEmptySubsequences: false) {
                guard !label.isEmpty, label.count <= 63, label.first != "-", label.last != "-",
                      label.utf8.allSatisfy({ isLowerAlnum($0) || $0 == UInt8(ascii: "-") }) else { return false }
            }
        }
        return true
    }

    /// Empty, or ≤ 63 characters `[A-Za-z0-9]` at both ends and `-_.` allowed inside.
    static func isLabelValue(_ v: String) -> Bool {
        let u = Array(v.utf8)
        if u.isEmpty { return true }
        guard u.count <= 63, isAlnum(u.first!), isAlnum(u.last!) else { return false }
        return u.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }
    }

    private static func isAlnum(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
    }

    private static func isLowerAlnum(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7A) }
}

/// Parses `--endpoint-target-ports` (`8000,8001`): 1–8 distinct ports.
public func parseKubernetesTargetPorts(_ text: String) throws -> [Int] {
    var ports: [Int] = []
    for raw in text.split(separator: ",", omittingEmptySubsequences: false) {
        let s = raw.trimmingCharacters(in: .whitespaces)
        guard let p = Int(s), (1...65535).contains(p) else {
            throw KubernetesConfigError("target port '\(s)' must be a number 1..65535")
        }
        guard !ports.contains(p) else { throw KubernetesConfigError("target port \(p) is listed twice") }
        ports.append(p)
    }
    guard (1...8).contains(ports.count) else { throw KubernetesConfigError("between 1 and 8 target ports are allowed, got \(ports.count)") }
    return ports
}

public enum KubernetesEndpointMapping {
    /// Endpoints of the serving pods: one per (pod, active target port), sorted by pod name then port order.
    /// Pods that don't match `selector` are ignored (a watch can deliver a pod whose labels just stopped matching).
    public static func endpoints(pods: some Sequence<KubernetesPod>, targetPorts: [Int],
                                 selector: KubernetesLabelSelector) -> [EndpointSpec] {
        var out: [EndpointSpec] = []
        for pod in pods.sorted(by: { ($0.meta.namespace, $0.meta.name) < ($1.meta.namespace, $1.meta.name) }) {
            guard pod.isServing, selector.matches(pod.meta.labels), let ip = pod.ipv4 else { continue }
            let active = pod.activePorts
            for (rank, port) in targetPorts.enumerated() where active?.contains(port) ?? true {
                let name = targetPorts.count == 1 ? pod.meta.name : "\(pod.meta.name)-rank-\(rank)"
                out.append(EndpointSpec(name: name, namespace: pod.meta.namespace.isEmpty ? "default" : pod.meta.namespace,
                                        address: ip, port: port, labels: pod.meta.labels))
            }
        }
        return out
    }
}

private func stringMap(_ v: Any?) -> [String: String] {
    guard let d = v as? [String: Any] else { return [:] }
    var m: [String: String] = [:]
    for (k, v) in d { if let s = v as? String { m[k] = s } }
    return m
}

/// An integral JSON number (JSONSerialization may hand back Int, Double or NSNumber).
private func jsonInt(_ v: Any?) -> Int? {
    if v is Bool { return nil }
    if let i = v as? Int { return i }
    if let d = v as? Double, d.rounded() == d, abs(d) < 1e15 { return Int(d) }
    return nil
}
