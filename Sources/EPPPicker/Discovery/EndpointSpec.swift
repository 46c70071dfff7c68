// A model-server endpoint as listed by file discovery (scheduling.md §6, §7).

/// Disaggregation role of an endpoint, from label `llm-d.ai/role`
/// (scheduling.md §7).
public enum Role: String, Sendable, Hashable, CaseIterable {
    case decode
    case prefill
    case prefillDecode = "prefill-decode"
    case encode
    case encodePrefill = "encode-prefill"
    case encodePrefillDecode = "encode-prefill-decode"

    public static let labelKey = "llm-d.ai/role"

    /// Role from a label value; the deprecated `both` means `prefill-decode`.
    /// Unknown values ⇒ nil.
    public init?(labelValue: String) {
        if labelValue == "both" {
            self = .prefillDecode
            return
        }
        self.init(rawValue: labelValue)
    }

    public var servesDecode: Bool {
        switch self {
        case .decode, .prefillDecode, .encodePrefillDecode: return true
        case .prefill, .encode, .encodePrefill: return false
        }
    }

    public var servesPrefill: Bool {
        switch self {
        case .prefill, .prefillDecode, .encodePrefill, .encodePrefillDecode: return true
        case .decode, .encode: return false
        }
    }

    public var servesEncode: Bool {
        switch self {
        case .encode, .encodePrefill, .encodePrefillDecode: return true
        case .decode, .prefill, .prefillDecode: return false
        }
    }
}

/// One endpoint from the endpoints file.
public struct EndpointSpec: Sendable, Hashable {
    /// Unique within the file.
    public var name: String
    /// Defaults to `default`.
    public var namespace: String
    /// Literal IPv4 address.
    public var address: String
    /// 1…65535.
    public var port: Int
    public var labels: [String: String]

    public init(name: String, namespace: String = "default", address: String, port: Int, labels: [String: String] = [:]) {
        self.name = name
        self.namespace = namespace
        self.address = address
        self.port = port
        self.labels = labels
    }

    /// `ip:port` — the value of `x-gateway-destination-endpoint`.
    public var hostPort: String { "\(address):\(port)" }

    /// `namespace/name`.
    public var namespacedName: String { "\(namespace)/\(name)" }

    /// The raw `llm-d.ai/role` label, if any.
    public var roleLabel: String? { labels[Role.labelKey] }

    /// Parsed role; nil when the label is absent **or** unknown.
    public var role: Role? { roleLabel.flatMap(Role.init(labelValue:)) }

    /// decode-filter: label absent, or a role that decodes. An unknown label
    /// value serves nothing.
    public var servesDecode: Bool {
        guard let label = roleLabel else { return true }
        return Role(labelValue: label)?.servesDecode ?? false
    }

    /// prefill-filter: `prefill`, `prefill-decode`/`both`, `encode-prefill`, `encode-prefill-decode`.
    public var servesPrefill: Bool { role?.servesPrefill ?? false }

    /// encode-filter: `encode`, `encode-prefill`, `encode-prefill-decode`.
    public var servesEncode: Bool { role?.servesEncode ?? false }
}

/// True for a dotted-quad IPv4 literal (`a.b.c.d`, each 0…255, no leading
/// zeros — Go `net.ParseIP` rules).
public func isIPv4Literal(_ s: String) -> Bool {
    var parts = 0
    var value = 0
    var digits = 0
    var leadingZero = false
    for c in s.utf8 {
        if c == UInt8(ascii: ".") {
            guard digits > 0 else { return false }
            parts += 1
            if parts > 3 { return false }
            value = 0
            digits = 0
            leadingZero = false
            continue
        }
        guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return false }
        if digits > 0 && leadingZero { return false }
        if digits == 0 && c == UInt8(ascii: "0") { leadingZero = true }
        value = value * 10 + Int(c - UInt8(ascii: "0"))
        digits += 1
        if value > 255 || digits > 3 { return false }
    }
    return parts == 3 && digits > 0
}
