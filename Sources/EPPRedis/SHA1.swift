/// SHA-1 (FIPS 180-4), only for Redis script ids (`EVALSHA`). Not for security.
public enum SHA1 {
    public static func digest(_ data: [UInt8]) -> [UInt8] {
        var h0: UInt32 = 0x6745_2301, h1: UInt32 = 0xEFCD_AB89, h2: UInt32 = 0x98BA_DCFE
        var h3: UInt32 = 0x1032_5476, h4: UInt32 = 0xC3D2_E1F0
        var msg = data
        let bitLength = UInt64(data.count) &* 8
        msg.append(0x80)
        while msg.count % 64 != 56 { msg.append(0) }
        for i in (0..<8).reversed() { msg.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
        var w = [UInt32](repeating: 0, count: 80)
        var chunk = 0
        while chunk < msg.count {
            for i in 0..<16 {
                let b = chunk + i * 4
                w[i] = UInt32(msg[b]) << 24 | UInt32(msg[b + 1]) << 16 | UInt32(msg[b + 2]) << 8 | UInt32(msg[b + 3])
            }
            for i in 16..<80 { w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1) }
            var a = h0, b = h1, c = h2, d = h3, e = h4
            for i in 0..<80 {
                let f: UInt32, k: UInt32
                switch i {
                case 0..<20: f = (b & c) | (~b & d); k = 0x5A82_7999
                case 20..<40: f = b ^ c ^ d; k = 0x6ED9_EBA1
                case 40..<60: f = (b & c) | (b & d) | (c & d); k = 0x8F1B_BCDC
                default: f = b ^ c ^ d; k = 0xCA62_C1D6
                }
                let t = rotl(a, 5) &+ f &+ e &+ k &+ w[i]
                e = d; d = c; c = rotl(b, 30); b = a; a = t
            }
            h0 = h0 &+ a; h1 = h1 &+ b; h2 = h2 &+ c; h3 = h3 &+ d; h4 = h4 &+ e
            chunk += 64
        }
        var out: [UInt8] = []
        out.reserveCapacity(20)
        for h in [h0, h1, h2, h3, h4] {
            out.append(UInt8(h >> 24)); out.append(UInt8(truncatingIfNeeded: h >> 16))
            out.append(UInt8(truncatingIfNeeded: h >> 8)); out.append(UInt8(truncatingIfNeeded: h))
        }
        return out
    }

    /// Lowercase hex digest, the form Redis uses for script ids.
    public static func hex(_ data: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var s: [UInt8] = []
        s.reserveCapacity(40)
        for b in digest(data) { s.append(digits[Int(b >> 4)]); s.append(digits[Int(b & 15)]) }
        return String(decoding: s, as: UTF8.self)
    }

    @inline(__always) private static func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { (x << n) | (x >> (32 - n)) }
}

/// A Lua script run with `EVALSHA` (id computed locally); `RedisClient.evalScript` falls back to `EVAL`
/// (which also caches the script server-side) on `NOSCRIPT`. Scripts given to `RedisClient.preload(_:)`
/// are `SCRIPT LOAD`ed on every (re)connect so the fallback is rare (e.g. after `SCRIPT FLUSH`).
public struct RedisScript: Sendable, Equatable {
    public let source: String
    /// Lowercase hex SHA-1 of `source`, exactly what `SCRIPT LOAD` returns.
    public let sha1: String
    let sourceBytes: [UInt8]
    let sha1Bytes: [UInt8]

    public init(_ source: String) {
        self.source = source
        sourceBytes = Array(source.utf8)
        sha1 = SHA1.hex(sourceBytes)
        sha1Bytes = Array(sha1.utf8)
    }
}
