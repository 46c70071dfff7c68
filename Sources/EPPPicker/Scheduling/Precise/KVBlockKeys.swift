/// llm-d request keys ("cbor-fnv", kv-index.md §2.1): every full block of `blockSize` tokens gets
/// `key_i = FNV-1a64(canonicalCBOR([key_{i-1}, tokens_i, extra_i]))`, chained from
/// `root = FNV-1a64(CBOR([FNV-1a64(hashSeed), null, model]))`. A trailing partial block has no key.
/// The keys are the decimal Redis keys an llm-d KV-events indexer writes (§3.1), so they must match its
/// bytes exactly: the CBOR is written by hand in the shortest canonical form fxamacker's
/// `CanonicalEncOptions` produce for these types. Pure functions, no state.
public enum KVBlockKeys {
    public static let fnvOffsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    static let fnvPrime: UInt64 = 0x0000_0100_0000_01b3

    /// The third element of a hashed block.
    public enum Extra: Sendable, Equatable {
        /// Text block: Go nil slice ⇒ CBOR `null`.
        case none
        /// Root: the model name as a text string.
        case model(String)
        /// Multimodal block: `[{"Hash": id}, …]` (Go `[]MMHash`, one map entry per struct field).
        case multimodal([String])
    }

    @inline(__always)
    static func fnv(_ h: inout UInt64, _ bytes: UnsafeRawBufferPointer) {
        for b in bytes { h = (h ^ UInt64(b)) &* fnvPrime }
    }

    public static func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
        var h = fnvOffsetBasis
        bytes.withUnsafeBytes { fnv(&h, $0) }
        return h
    }

    /// `FNV-1a64(bytes(hashSeed))` (seed "" ⇒ the offset basis).
    public static func initHash(seed: String) -> UInt64 { fnv1a64(Array(seed.utf8)) }

    /// CBOR head: major type (high 3 bits) + shortest-form argument.
    static func appendHead(_ major: UInt8, _ value: UInt64, to out: inout [UInt8]) {
        let m = major << 5
        switch value {
        case 0..<24: out.append(m | UInt8(value))
        case 24...0xff: out.append(m | 24); out.append(UInt8(value))
        case 0x100...0xffff: out.append(m | 25); appendBE(value, bytes: 2, to: &out)
        case 0x1_0000...0xffff_ffff: out.append(m | 26); appendBE(value, bytes: 4, to: &out)
        default: out.append(m | 27); appendBE(value, bytes: 8, to: &out)
        }
    }

    @inline(__always)
    static func appendBE(_ v: UInt64, bytes: Int, to out: inout [UInt8]) {
        for i in stride(from: bytes - 1, through: 0, by: -1) { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    static func appendText(_ s: String, to out: inout [UInt8]) {
        let u = Array(s.utf8)
        appendHead(3, UInt64(u.count), to: &out)
        out.append(contentsOf: u)
    }

    /// Canonical CBOR of `[parent, tokens, extra]`; `tokens == nil` is the root's nil slice (`f6`).
    public static func cbor<C: Collection>(parent: UInt64, tokens: C?, extra: Extra, into out: inout [UInt8])
        where C.Element == UInt32 {
        out.removeAll(keepingCapacity: true)
        out.append(0x83)
        appendHead(0, parent, to: &out)
        if let tokens {
            appendHead(4, UInt64(tokens.count), to: &out)
            for t in tokens { appendHead(0, UInt64(t), to: &out) }
        } else {
            out.append(0xf6)
        }
        switch extra {
        case .none: out.append(0xf6)
        case .model(let m): appendText(m, to: &out)
        case .multimodal(let ids):
            appendHead(4, UInt64(ids.count), to: &out)
            for id in ids {
                out.append(0xa1)
                appendText("Hash", to: &out)
                appendText(id, to: &out)
            }
        }
    }

    /// One link of the chain.
    public static func hash<C: Collection>(parent: UInt64, tokens: C?, extra: Extra, scratch: inout [UInt8]) -> UInt64
        where C.Element == UInt32 {
        cbor(parent: parent, tokens: tokens, extra: extra, into: &scratch)
        var h = fnvOffsetBasis
        scratch.withUnsafeBytes { fnv(&h, $0) }
        return h
    }

    /// `hash(initHash(seed), nil, model)`.
    public static func root(seed: String, model: String) -> UInt64 {
        var scratch: [UInt8] = []
        return hash(parent: initHash(seed: seed), tokens: [UInt32]?.none, extra: .model(model), scratch: &scratch)
    }

    /// Request keys of a text prompt: one per full block, at most `maxBlocks`.
    public static func keys(tokens: [UInt32], blockSize: Int, root: UInt64, maxBlocks: Int = .max) -> [UInt64] {
        guard blockSize > 0 else { return [] }
        let n = min(tokens.count / blockSize, maxBlocks)
        var out: [UInt64] = []
        out.reserveCapacity(n)
        var scratch: [UInt8] = []
        scratch.reserveCapacity(16 + blockSize * 5)
        var parent = root
        for i in 0..<n {
            parent = hash(parent: parent, tokens: tokens[(i * blockSize)..<((i + 1) * blockSize)], extra: .none, scratch: &scratch)
            out.append(parent)
        }
        return out
    }
}
