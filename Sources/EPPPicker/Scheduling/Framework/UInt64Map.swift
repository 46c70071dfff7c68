/// An open-addressing hash map keyed by `UInt64` (linear probing, backward-shift deletion, load ≤ 1/2).
///
/// Why not `Dictionary`: every Dictionary probe runs SipHash over the key. The prefix index's keys are
/// xxHash64 outputs (already uniform) or object addresses, so one multiply (Fibonacci hashing) spreads them
/// well enough; on the scheduler's hot path this halves the cost of each of the ~100 index probes a
/// 4 KB prompt makes. Not thread-safe: owners wrap it in a lock.
struct UInt64Map<Value> {
    private var keys: [UInt64]
    private var values: [Value?]
    private var shift: UInt64
    private(set) var count = 0

    init(capacity: Int = 8) {
        var slots = 8
        while slots < capacity * 2 { slots <<= 1 }
        keys = [UInt64](repeating: 0, count: slots)
        values = [Value?](repeating: nil, count: slots)
        shift = UInt64(64 - slots.trailingZeroBitCount)
    }

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    private func home(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// Slot holding `key`, or nil.
    @inline(__always)
    private func slot(of key: UInt64) -> Int? {
        let mask = keys.count - 1
        var i = home(key)
        while values[i] != nil {
            if keys[i] == key { return i }
            i = (i + 1) & mask
        }
        return nil
    }

    /// Membership without copying the value (no retain for reference values).
    func contains(_ key: UInt64) -> Bool { slot(of: key) != nil }

    subscript(key: UInt64) -> Value? {
        get {
            guard let i = slot(of: key) else { return nil }
            return values[i]
        }
        set {
            if let newValue { insert(key, newValue) } else { remove(key) }
        }
    }

    /// Runs `body` on the value of `key`, inserting `make()` first when absent. Returns whether it was
    /// inserted.
    @discardableResult
    mutating func update(_ key: UInt64, orInsert make: () -> Value, _ body: (inout Value) -> Void) -> Bool {
        if let i = slot(of: key) {
            body(&values[i]!)
            return false
        }
        var v = make()
        body(&v)
        insert(key, v)
        return true
    }

    private mutating func insert(_ key: UInt64, _ value: Value) {
        if (count + 1) * 2 > keys.count { grow() }
        let mask = keys.count - 1
        var i = home(key)
        while values[i] != nil {
            if keys[i] == key { values[i] = value; return }
            i = (i + 1) & mask
        }
        keys[i] = key
        values[i] = value
        count += 1
    }

    @discardableResult
    mutating func remove(_ key: UInt64) -> Value? {
        guard var hole = slot(of: key) else { return nil }
        let removed = values[hole]
        let mask = keys.count - 1
        // Backward shift: pull later entries of the probe run into the hole when their home allows it.
        var j = hole
        while true {
            j = (j + 1) & mask
            guard values[j] != nil else { break }
            let h = home(keys[j])
            // Entry j may move to `hole` unless its home lies cyclically in (hole, j].
            let stays = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j)
            if !stays {
                keys[hole] = keys[j]
                values[hole] = values[j]
                hole = j
            }
        }
        values[hole] = nil
        count -= 1
        return removed
    }

    mutating func removeAll() {
        for i in values.indices { values[i] = nil }
        count = 0
    }

    private mutating func grow() {
        let oldKeys = keys, oldValues = values
        let slots = keys.count * 2
        keys = [UInt64](repeating: 0, count: slots)
        values = [Value?](repeating: nil, count: slots)
        shift = UInt64(64 - slots.trailingZeroBitCount)
        count = 0
        for i in oldKeys.indices { if let v = oldValues[i] { insert(oldKeys[i], v) } }
    }

    /// Calls `body` for every entry (unspecified order).
    func forEach(_ body: (UInt64, Value) -> Void) {
        for i in keys.indices { if let v = values[i] { body(keys[i], v) } }
    }

    var allKeys: [UInt64] {
        var out: [UInt64] = []
        out.reserveCapacity(count)
        forEach { k, _ in out.append(k) }
        return out
    }
}
