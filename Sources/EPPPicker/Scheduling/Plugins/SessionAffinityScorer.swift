/// `session-affinity-scorer` — 1.0 for the endpoint whose `namespace/name` equals the base64-decoded request
/// header `x-session-token`, else 0.0 (no header / undecodable ⇒ all 0). The response then carries
/// `x-session-token: base64(namespace/name)` of the chosen endpoint (set on the response headers answer:
/// in FULL_DUPLEX_STREAMED headers cannot follow the body). No parameters.
public final class SessionAffinityScorer: SchedulingScorer {
    public let typeName = "session-affinity-scorer"
    public let name: String
    public static let header = "x-session-token"

    public init(name: String = "session-affinity-scorer", params: ConfigReader? = nil) throws(PickerConfigError) {
        self.name = name
        try params?.finish()
    }

    public func score(_ ctx: SchedulingContext, _ candidates: [Int], into scores: inout [Double]) {
        guard let token = ctx.header(SessionAffinityScorer.header), let decoded = Base64.decode(token) else { return }
        for (k, c) in candidates.enumerated() {
            let s = ctx.endpoints[c].spec
            // compare "namespace/name" without building the string
            let ns = s.namespace.utf8, nm = s.name.utf8
            guard decoded.count == ns.count + 1 + nm.count else { continue }
            if decoded.starts(with: ns) && decoded[ns.count] == UInt8(ascii: "/") && decoded[(ns.count + 1)...].elementsEqual(nm) {
                scores[k] = 1
            }
        }
    }

    /// The response header value for an endpoint.
    public static func token(for e: Endpoint) -> String { Base64.encode(Array(e.spec.namespacedName.utf8)) }
}

/// Standard base64 (RFC 4648, with padding) without Foundation.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            for s in [18, 12, 6, 0] { out.append(alphabet[Int((v >> UInt32(s)) & 63)]) }
            i += 3
        }
        let rest = bytes.count - i
        if rest > 0 {
            var v = UInt32(bytes[i]) << 16
            if rest == 2 { v |= UInt32(bytes[i + 1]) << 8 }
            out.append(alphabet[Int((v >> 18) & 63)])
            out.append(alphabet[Int((v >> 12) & 63)])
            out.append(rest == 2 ? alphabet[Int((v >> 6) & 63)] : UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes standard or URL-safe base64, padding optional; nil when invalid.
    public static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        var acc: UInt32 = 0
        var bits = 0
        for ch in text.utf8 {
            let v: UInt32
            switch ch {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(ch - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(ch - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(ch - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "+"), UInt8(ascii: "-"): v = 62
            case UInt8(ascii: "/"), UInt8(ascii: "_"): v = 63
            case UInt8(ascii: "="): continue
            default: return nil
            }
            acc = acc << 6 | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        return out
    }
}
