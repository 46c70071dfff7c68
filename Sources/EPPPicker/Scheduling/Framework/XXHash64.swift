// XXH64 (seed 0 by default), the hash of the approximate prefix index (kv-index.md §1.2).
// Written in Swift (no C call, no extra system-library target); checked against the spec's vectors
// (xxh64("") = ef46db3751d8e999, xxh64("abc") = 44bc2cf5ad770999) in PrefixIndexTests.

public enum XXHash64 {
    @usableFromInline static let p1: UInt64 = 11_400_714_785_074_694_791
    @usableFromInline static let p2: UInt64 = 14_029_467_366_897_019_727
    @usableFromInline static let p3: UInt64 = 1_609_587_929_392_839_161
    @usableFromInline static let p4: UInt64 = 9_650_029_242_287_828_579
    @usableFromInline static let p5: UInt64 = 2_870_177_450_012_600_261

    @inline(__always) @usableFromInline
    static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) @usableFromInline
    static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) @usableFromInline
    static func merge(_ acc: UInt64, _ val: UInt64) -> UInt64 {
        (acc ^ round(0, val)) &* p1 &+ p4
    }

    /// One-shot XXH64 of `bytes`.
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        let n = bytes.count
        guard let base = bytes.baseAddress else { return finish(seed &+ p5 &+ 0, base: nil, from: 0, to: 0) }
        var i = 0
        var h: UInt64
        if n >= 32 {
            var v1 = seed &+ p1 &+ p2, v2 = seed &+ p2, v3 = seed, v4 = seed &- p1
            let limit = n - 32
            while i <= limit {
                v1 = round(v1, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                v2 = round(v2, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)))
                v3 = round(v3, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)))
                v4 = round(v4, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)))
                i += 32
            }
            h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
            h = merge(h, v1); h = merge(h, v2); h = merge(h, v3); h = merge(h, v4)
        } else {
            h = seed &+ p5
        }
        h &+= UInt64(n)
        return finish(h, base: base, from: i, to: n)
    }

    /// XXH64 of `bytes ‖ LE64(suffix)` without copying `bytes` (the prefix-hash chain's
    /// `xxh64(block ‖ LE64(h_{i−1}))`): whole 32-byte stripes are read in place; only the last < 32 bytes
    /// and the suffix go through a 40-byte stack buffer.
    public static func hash(_ bytes: UnsafeRawBufferPointer, suffix: UInt64, seed: UInt64 = 0) -> UInt64 {
        let count = bytes.count
        let n = count + 8
        var tail: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &tail) { tb -> UInt64 in
            var v1 = seed &+ p1 &+ p2, v2 = seed &+ p2, v3 = seed, v4 = seed &- p1
            var i = 0
            if let base = bytes.baseAddress {
                while i + 32 <= count {
                    v1 = round(v1, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                    v2 = round(v2, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)))
                    v3 = round(v3, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)))
                    v4 = round(v4, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)))
                    i += 32
                }
            }
            let r = count - i
            if r > 0 { tb.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[i..<count])) }
            tb.storeBytes(of: suffix.littleEndian, toByteOffset: r, as: UInt64.self)
            let tn = r + 8
            let t = UnsafeRawPointer(tb.baseAddress!)
            var j = 0
            var h: UInt64
            if n >= 32 {
                if tn >= 32 {
                    v1 = round(v1, UInt64(littleEndian: t.loadUnaligned(fromByteOffset: 0, as: UInt64.self)))
                    v2 = round(v2, UInt64(littleEndian: t.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
                    v3 = round(v3, UInt64(littleEndian: t.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
                    v4 = round(v4, UInt64(littleEndian: t.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
                    j = 32
                }
                h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
                h = merge(h, v1); h = merge(h, v2); h = merge(h, v3); h = merge(h, v4)
            } else {
                h = seed &+ p5
            }
            h &+= UInt64(n)
            return finish(h, base: t, from: j, to: tn)
        }
    }

    @inline(__always) @usableFromInline
    static func finish(_ hIn: UInt64, base: UnsafeRawPointer?, from: Int, to n: Int) -> UInt64 {
        var h = hIn
        var i = from
        if let base {
            while i + 8 <= n {
                h ^= round(0, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                h = rotl(h, 27) &* p1 &+ p4
                i += 8
            }
            if i + 4 <= n {
                h ^= UInt64(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt32.self))) &* p1
                h = rotl(h, 23) &* p2 &+ p3
                i += 4
            }
            while i < n {
                h ^= UInt64(base.load(fromByteOffset: i, as: UInt8.self)) &* p5
                h = rotl(h, 11) &* p1
                i += 1
            }
        }
        h ^= h >> 33
        h &*= p2
        h ^= h >> 29
        h &*= p3
        h ^= h >> 32
        return h
    }

    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, seed: seed) }
    }

    public static func hash(_ s: String) -> UInt64 {
        var s = s
        return s.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
    }
}
