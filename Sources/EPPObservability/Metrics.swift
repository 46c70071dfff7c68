import Atomics
import EPPLock

/// A monotonically increasing counter (lock-free).
public final class Counter: Sendable {
    private let value = ManagedAtomic<UInt64>(0)
    public init() {}
    @inline(__always) public func increment(by n: UInt64 = 1) { value.wrappingIncrement(by: n, ordering: .relaxed) }
    public var current: UInt64 { value.load(ordering: .relaxed) }
}

/// A gauge holding a Double (stored as bit pattern; set/add are lock-free).
public final class Gauge: Sendable {
    private let bits = ManagedAtomic<UInt64>(0)
    public init() {}
    public func set(_ v: Double) { bits.store(v.bitPattern, ordering: .relaxed) }
    public func add(_ d: Double) {
        var old = bits.load(ordering: .relaxed)
        while true {
            let new = (Double(bitPattern: old) + d).bitPattern
            let (done, seen) = bits.compareExchange(expected: old, desired: new, ordering: .relaxed)
            if done { return }
            old = seen
        }
    }
    public var current: Double { Double(bitPattern: bits.load(ordering: .relaxed)) }
}

/// A Prometheus histogram with fixed upper bounds (seconds). Observations are lock-free.
public final class Histogram: Sendable {
    public let bounds: [Double]
    private let buckets: [ManagedAtomic<UInt64>]
    private let count = ManagedAtomic<UInt64>(0)
    private let sumNanos = ManagedAtomic<UInt64>(0)    // sum kept in integer nanounits: exact and lock-free

    public init(bounds: [Double]) {
        self.bounds = bounds
        buckets = bounds.map { _ in ManagedAtomic<UInt64>(0) }
    }

    /// Records a value in the histogram's unit (seconds for durations).
    public func observe(_ v: Double) {
        for (i, b) in bounds.enumerated() where v <= b {
            buckets[i].wrappingIncrement(ordering: .relaxed)
            break
        }
        count.wrappingIncrement(ordering: .relaxed)
        sumNanos.wrappingIncrement(by: UInt64(max(0, v) * 1e9), ordering: .relaxed)
    }

    public func observe(nanoseconds: UInt64) { observe(Double(nanoseconds) / 1e9) }

    public var sampleCount: UInt64 { count.load(ordering: .relaxed) }
    public var sum: Double { Double(sumNanos.load(ordering: .relaxed)) / 1e9 }
    /// Cumulative counts per bound (Prometheus `le` semantics).
    public var cumulativeCounts: [UInt64] {
        var acc: UInt64 = 0
        return buckets.map { acc += $0.load(ordering: .relaxed); return acc }
    }

    public static func exponential(start: Double, factor: Double, count: Int) -> [Double] {
        (0..<count).map { start * pow(factor, Double($0)) }
    }
}

private func pow(_ b: Double, _ e: Double) -> Double {
    var r = 1.0
    for _ in 0..<Int(e) { r *= b }
    return r
}

public enum MetricKind: String, Sendable { case counter, gauge, histogram }

/// A metric family: name, help, type, and children by label values. Children are created on first use
/// and cached by callers on hot paths.
public final class Family<Metric: Sendable>: Sendable {
    public let name: String
    public let help: String
    public let kind: MetricKind
    public let labelNames: [String]
    private let make: @Sendable () -> Metric
    private let children = Lock<[[String]: Metric]>([:])
    private let order = Lock<[[String]]>([])

    init(name: String, help: String, kind: MetricKind, labelNames: [String], make: @escaping @Sendable () -> Metric) {
        self.name = name
        self.help = help
        self.kind = kind
        self.labelNames = labelNames
        self.make = make
    }

    public func labels(_ values: String...) -> Metric { child(values) }

    public func child(_ values: [String]) -> Metric {
        precondition(values.count == labelNames.count, "\(name): expected \(labelNames.count) label values")
        return children.withLock { map in
            if let m = map[values] { return m }
            let m = make()
            map[values] = m
            order.withLock { $0.append(values) }
            return m
        }
    }

    public func remove(_ values: [String]) {
        children.withLock { _ = $0.removeValue(forKey: values) }
        order.withLock { $0.removeAll { $0 == values } }
    }

    func snapshot() -> [([String], Metric)] {
        let keys = order.withLock { $0 }
        return children.withLock { map in keys.compactMap { k in map[k].map { (k, $0) } } }
    }
}

/// All metric families of the process, rendered in the Prometheus text format (version 0.0.4).
public final class MetricsRegistry: Sendable {
    private let counters = Lock<[Family<Counter>]>([])
    private let gauges = Lock<[Family<Gauge>]>([])
    private let histograms = Lock<[Family<Histogram>]>([])
    private let collectors = Lock<[@Sendable () -> Void]>([])
    private let order = Lock<[(MetricKind, Int)]>([])

    public init() {}

    public func counter(_ name: String, _ help: String, labels: [String] = []) -> Family<Counter> {
        let f = Family<Counter>(name: name, help: help, kind: .counter, labelNames: labels) { Counter() }
        counters.withLock { c in order.withLock { $0.append((.counter, c.count)) }; c.append(f) }
        return f
    }

    public func gauge(_ name: String, _ help: String, labels: [String] = []) -> Family<Gauge> {
        let f = Family<Gauge>(name: name, help: help, kind: .gauge, labelNames: labels) { Gauge() }
        gauges.withLock { c in order.withLock { $0.append((.gauge, c.count)) }; c.append(f) }
        return f
    }

    public func histogram(_ name: String, _ help: String, labels: [String] = [], bounds: [Double]) -> Family<Histogram> {
        let f = Family<Histogram>(name: name, help: help, kind: .histogram, labelNames: labels) { Histogram(bounds: bounds) }
        histograms.withLock { c in order.withLock { $0.append((.histogram, c.count)) }; c.append(f) }
        return f
    }

    /// A hook run before each rendering (e.g. to refresh gauges computed from other state).
    public func addCollector(_ f: @escaping @Sendable () -> Void) { collectors.withLock { $0.append(f) } }

    /// Drops every collector. Collectors capture the state they read, which often holds this registry back
    /// (e.g. `PickerMetrics`); at shutdown this breaks those cycles. Later renders skip the refresh.
    public func removeCollectors() { collectors.withLock { $0.removeAll() } }

    public func render() -> String {
        for c in collectors.withLock({ $0 }) { c() }
        var out = ""
        out.reserveCapacity(16 * 1024)
        let cs = counters.withLock { $0 }, gs = gauges.withLock { $0 }, hs = histograms.withLock { $0 }
        for (kind, i) in order.withLock({ $0 }) {
            switch kind {
            case .counter:
                let f = cs[i]
                header(&out, f.name, f.help, kind)
                for (values, m) in f.snapshot() { sample(&out, f.name, f.labelNames, values, nil, Double(m.current)) }
            case .gauge:
                let f = gs[i]
                header(&out, f.name, f.help, kind)
                for (values, m) in f.snapshot() { sample(&out, f.name, f.labelNames, values, nil, m.current) }
            case .histogram:
                let f = hs[i]
                header(&out, f.name, f.help, kind)
                for (values, h) in f.snapshot() {
                    let cum = h.cumulativeCounts
                    for (b, c) in zip(h.bounds, cum) {
                        sample(&out, f.name + "_bucket", f.labelNames, values, ("le", formatNumber(b)), Double(c))
                    }
                    sample(&out, f.name + "_bucket", f.labelNames, values, ("le", "+Inf"), Double(h.sampleCount))
                    sample(&out, f.name + "_sum", f.labelNames, values, nil, h.sum)
                    sample(&out, f.name + "_count", f.labelNames, values, nil, Double(h.sampleCount))
                }
            }
        }
        return out
    }

    private func header(_ out: inout String, _ name: String, _ help: String, _ kind: MetricKind) {
        out += "# HELP \(name) \(escapeHelp(help))\n# TYPE \(name) \(kind.rawValue)\n"
    }

    private func sample(_ out: inout String, _ name: String, _ labelNames: [String], _ values: [String],
                        _ extra: (String, String)?, _ v: Double) {
        out += name
        if !labelNames.isEmpty || extra != nil {
            out += "{"
            var first = true
            for (n, val) in zip(labelNames, values) {
                if !first { out += "," }
                first = false
                out += n + "=\"" + escapeLabel(val) + "\""
            }
            if let (n, val) = extra {
                if !first { out += "," }
                out += n + "=\"" + val + "\""
            }
            out += "}"
        }
        out += " " + formatNumber(v) + "\n"
    }
}

public func formatNumber(_ v: Double) -> String {
    if v.isNaN { return "NaN" }
    if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
    if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
    return String(v)
}

private func escapeLabel(_ s: String) -> String {
    guard s.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return s }
    var r = ""
    for c in s {
        switch c {
        case "\\": r += "\\\\"
        case "\"": r += "\\\""
        case "\n": r += "\\n"
        default: r.append(c)
        }
    }
    return r
}

private func escapeHelp(_ s: String) -> String {
    s.replacingBackslashesAndNewlines()
}

extension String {
    fileprivate func replacingBackslashesAndNewlines() -> String {
        guard contains(where: { $0 == "\\" || $0 == "\n" }) else { return self }
        var r = ""
        for c in self {
            switch c {
            case "\\": r += "\\\\"
            case "\n": r += "\\n"
            default: r.append(c)
            }
        }
        return r
    }
}
