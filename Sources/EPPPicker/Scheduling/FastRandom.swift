/// SplitMix64: a tiny, fast generator for tie-breaks and request ids. One per loop (not thread-safe);
/// seeded from the system generator. Not for secrets.
public struct FastRandom: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64 = UInt64.random(in: .min ... .max)) { state = seed }

    @inline(__always)
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A random UUIDv4 string (lower-case, 36 chars), built in place without intermediate arrays.
    public mutating func uuidV4() -> String {
        let a = next(), b = next()
        return String(unsafeUninitializedCapacity: 36) { out in
            let hex: StaticString = "0123456789abcdef"
            let digits = hex.utf8Start
            var o = 0
            for i in 0..<16 {
                var byte = UInt8(truncatingIfNeeded: (i < 8 ? a : b) >> (8 * UInt64(i & 7)))
                if i == 6 { byte = (byte & 0x0F) | 0x40 }      // version 4
                if i == 8 { byte = (byte & 0x3F) | 0x80 }      // RFC 4122 variant
                if i == 4 || i == 6 || i == 8 || i == 10 { out[o] = UInt8(ascii: "-"); o += 1 }
                out[o] = digits[Int(byte >> 4)]
                out[o + 1] = digits[Int(byte & 0x0F)]
                o += 2
            }
            return o
        }
    }
}
