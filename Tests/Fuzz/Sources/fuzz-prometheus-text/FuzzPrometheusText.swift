// Prometheus text exposition parser (model-server metrics scrape).
// Invariants: no trap on any bytes; errors carry a message; parsing is
// deterministic; names and label names match the grammar; re-rendering the
// parsed samples as exposition text parses back to the same samples; the
// name filter of forEachSample sees exactly the matching subset.
import EPPPicker
import FuzzSupport

@main enum FuzzMain {
    static func main() { runLibFuzzer(fuzzPrometheusText) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPrometheusText(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = fuzzBytes(data, size)
    // Small limits so the limit paths are reachable with short inputs.
    let limits = PrometheusText.Limits(maxLineLength: 512, maxSamples: 64, maxLabels: 8, maxBytes: 8192)
    let samples: [PrometheusSample]
    switch parse(input, limits) {
    case .failure(let error):
        fuzzCheck(!error.message.isEmpty && error.line >= 0, "unclear error \(error)")
        return 0
    case .success(let s):
        samples = s
    }
    fuzzCheck((try? parse(input, limits).get()) == samples, "parse is not deterministic")
    fuzzCheck(samples.count <= limits.maxSamples, "\(samples.count) samples over the limit")

    for s in samples {
        fuzzCheck(isMetricName(s.name), "bad metric name \(s.name.debugDescription)")
        fuzzCheck(s.labels.count <= limits.maxLabels, "too many labels")
        for l in s.labels { fuzzCheck(isLabelName(l.name), "bad label name \(l.name.debugDescription)") }
    }

    let rendered = render(samples)
    switch parse(rendered, PrometheusText.Limits()) {
    case .success(let reparsed):
        fuzzCheck(reparsed == samples, "render/parse round trip changed samples:\n\(String(decoding: rendered, as: UTF8.self))")
    case .failure(let error):
        fuzzCheck(false, "rendered samples do not parse: \(error)\n\(String(decoding: rendered, as: UTF8.self))")
    }

    // Filter on the first name byte: the subset, in order.
    if let first = samples.first?.name.utf8.first {
        var seen: [PrometheusSample] = []
        try? input.withUnsafeBytes { buf in
            try PrometheusText.forEachSample(in: buf, limits: limits, include: { $0.first == first }) { seen.append($0) }
        }
        fuzzCheck(seen == samples.filter { $0.name.utf8.first == first }, "name filter saw a different subset")
    }
    return 0
}

private func parse(_ bytes: [UInt8], _ limits: PrometheusText.Limits) -> Result<[PrometheusSample], PrometheusParseError> {
    var copy = bytes
    return copy.withUnsafeMutableBytes { (buf) -> Result<[PrometheusSample], PrometheusParseError> in
        do throws(PrometheusParseError) { return .success(try PrometheusText.parse(bytes: UnsafeRawBufferPointer(buf), limits: limits)) } catch {
            return .failure(error)
        }
    }
}

private func isMetricName(_ s: String) -> Bool {
    let u = Array(s.utf8)
    guard let f = u.first, isAlpha(f) || f == UInt8(ascii: "_") || f == UInt8(ascii: ":") else { return false }
    return u.allSatisfy { isAlpha($0) || isDigit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ":") }
}

private func isLabelName(_ s: String) -> Bool {
    let u = Array(s.utf8)
    guard let f = u.first, isAlpha(f) || f == UInt8(ascii: "_") else { return false }
    return u.allSatisfy { isAlpha($0) || isDigit($0) || $0 == UInt8(ascii: "_") }
}

private func isAlpha(_ c: UInt8) -> Bool { (c | 0x20) >= UInt8(ascii: "a") && (c | 0x20) <= UInt8(ascii: "z") }
private func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

/// Exposition text for `samples` (our own writer, independent of the parser).
private func render(_ samples: [PrometheusSample]) -> [UInt8] {
    var out = ""
    for s in samples {
        out += s.name
        if !s.labels.isEmpty {
            out += "{"
            out += s.labels.map { l in
                var v = ""
                for ch in l.value.unicodeScalars {
                    switch ch {
                    case "\\": v += "\\\\"
                    case "\"": v += "\\\""
                    case "\n": v += "\\n"
                    default: v.unicodeScalars.append(ch)
                    }
                }
                return "\(l.name)=\"\(v)\""
            }.joined(separator: ",")
            out += "}"
        }
        let v = s.value
        out += " " + (v.isNaN ? "NaN" : v == .infinity ? "+Inf" : v == -.infinity ? "-Inf" : "\(v)")
        if let t = s.timestampMs { out += " \(t)" }
        out += "\n"
    }
    return Array(out.utf8)
}
