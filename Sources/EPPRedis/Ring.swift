/// FIFO ring buffer (power-of-two capacity); no allocation once grown.
struct Ring<Element> {
    private var buf: [Element?] = Array(repeating: nil, count: 16)
    private var head = 0
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }
    var first: Element? { count == 0 ? nil : buf[head] }
    var last: Element? { count == 0 ? nil : buf[(head + count - 1) & (buf.count - 1)] }

    mutating func append(_ x: Element) {
        if count == buf.count { grow() }
        buf[(head + count) & (buf.count - 1)] = x
        count += 1
    }

    @discardableResult
    mutating func removeFirst() -> Element {
        let x = buf[head]!
        buf[head] = nil
        head = (head + 1) & (buf.count - 1)
        count -= 1
        return x
    }

    @discardableResult
    mutating func removeLast() -> Element {
        let i = (head + count - 1) & (buf.count - 1)
        let x = buf[i]!
        buf[i] = nil
        count -= 1
        return x
    }

    /// All elements in FIFO order; the ring is empty afterwards.
    mutating func drain() -> [Element] {
        var out: [Element] = []
        out.reserveCapacity(count)
        while count > 0 { out.append(removeFirst()) }
        head = 0
        return out
    }

    private mutating func grow() {
        var nb = [Element?](repeating: nil, count: buf.count * 2)
        for i in 0..<count { nb[i] = buf[(head + i) & (buf.count - 1)] }
        buf = nb
        head = 0
    }
}
