import Foundation

/// Self-contained HTML report (inline SVG, no external assets): summary table, TTFT histogram
/// and per-endpoint load bars.
public enum HTMLReport {
    public static func render(report: LoadReport, results: LoadResults) -> String {
        let ttfts = results.results.filter(\.succeeded).compactMap(\.ttft).map { $0 * 1000 }
        var h = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>epp-load report</title>
        <style>
        body{font-family:system-ui,sans-serif;margin:2em;color:#222}
        table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
        th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
        h2{margin-top:1.5em}svg text{font-size:11px;fill:#333}
        </style></head><body>
        <h1>epp-load report</h1>
        """
        let r = report.run
        h += "<p>\(esc(r.workload)) · \(esc(r.api))\(r.stream ? " · stream" : "") → <code>\(esc(r.target))</code> · "
        h += r.rate.map { "Poisson \($0)/s" } ?? "concurrency \(r.concurrency ?? 0)"
        h += " · seed \(r.seed)</p>\n"
        h += "<table><tr><th>requests</th><th>ok</th><th>errors</th><th>duration s</th><th>req/s</th><th>prefix hit</th><th>group purity</th></tr>"
        h += "<tr><td>\(report.requests)</td><td>\(report.succeeded)</td><td>\(report.errors)</td><td>\(fmt(report.duration_s))</td>"
        h += "<td>\(fmt(report.requests_per_second))</td><td>\(report.prefix_hit_rate.map { fmt($0, 4) } ?? "–")</td>"
        h += "<td>\(report.group_purity.map { fmt($0, 4) } ?? "–")</td></tr></table>\n"
        h += "<table><tr><th>latency ms</th><th>p50</th><th>p90</th><th>p99</th><th>mean</th><th>count</th></tr>"
        for (name, s) in [("TTFT", report.ttft_ms), ("E2E", report.e2e_ms), ("ITL", report.itl_ms)] {
            h += "<tr><td>\(name)</td><td>\(opt(s.p50))</td><td>\(opt(s.p90))</td><td>\(opt(s.p99))</td><td>\(opt(s.mean))</td><td>\(s.count)</td></tr>"
        }
        h += "</table>\n"
        if !report.errors_by_status.isEmpty {
            h += "<p>Errors: " + report.errors_by_status.sorted { $0.key < $1.key }.map { "\(esc($0.key)): \($0.value)" }.joined(separator: ", ") + "</p>\n"
        }
        h += "<h2>TTFT histogram (ms)</h2>\n" + histogram(ttfts)
        h += "<h2>Requests per endpoint</h2>\n" + bars(report.per_endpoint)
        h += "</body></html>\n"
        return h
    }

    static func histogram(_ values: [Double], bins: Int = 30) -> String {
        guard let lo = values.min(), let hi = values.max() else { return "<p>no samples</p>\n" }
        let width = 760.0, height = 260.0, left = 50.0, bottom = 30.0
        let span = max(hi - lo, 1e-9)
        var counts = Array(repeating: 0, count: bins)
        for v in values { counts[min(bins - 1, Int((v - lo) / span * Double(bins)))] += 1 }
        let maxC = Double(counts.max() ?? 1)
        let bw = (width - left - 10) / Double(bins)
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"TTFT histogram\">\n"
        s += "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - 10)\" y2=\"\(height - bottom)\" stroke=\"#333\"/>\n"
        s += "<line x1=\"\(left)\" y1=\"10\" x2=\"\(left)\" y2=\"\(height - bottom)\" stroke=\"#333\"/>\n"
        for (i, c) in counts.enumerated() {
            let bh = Double(c) / maxC * (height - bottom - 20)
            let x = left + Double(i) * bw
            let b0 = lo + span * Double(i) / Double(bins)
            let b1 = lo + span * Double(i + 1) / Double(bins)
            s += "<rect x=\"\(fmt(x + 1))\" y=\"\(fmt(height - bottom - bh))\" width=\"\(fmt(max(bw - 2, 1)))\" height=\"\(fmt(bh))\" fill=\"#4a7bd0\"><title>\(fmt(b0))–\(fmt(b1)) ms: \(c)</title></rect>\n"
        }
        s += "<text x=\"\(left)\" y=\"\(height - 10)\">\(fmt(lo)) ms</text>\n"
        s += "<text x=\"\(width - 10)\" y=\"\(height - 10)\" text-anchor=\"end\">\(fmt(hi)) ms</text>\n"
        s += "<text x=\"\(left - 5)\" y=\"18\" text-anchor=\"end\">\(Int(maxC))</text>\n"
        s += "</svg>\n"
        return s
    }

    static func bars(_ perEndpoint: [String: Int]) -> String {
        guard !perEndpoint.isEmpty else { return "<p>no endpoint headers seen</p>\n" }
        let items = perEndpoint.sorted { $0.key < $1.key }
        let rowH = 24.0, left = 90.0, width = 760.0
        let maxC = Double(items.map(\.value).max() ?? 1)
        let height = Double(items.count) * rowH + 10
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"per-endpoint load\">\n"
        for (i, (k, v)) in items.enumerated() {
            let y = 5 + Double(i) * rowH
            let w = Double(v) / maxC * (width - left - 80)
            s += "<text x=\"\(left - 8)\" y=\"\(fmt(y + 15))\" text-anchor=\"end\">\(esc(k))</text>\n"
            s += "<rect x=\"\(left)\" y=\"\(fmt(y + 3))\" width=\"\(fmt(max(w, 1)))\" height=\"\(fmt(rowH - 6))\" fill=\"#d0884a\"/>\n"
            s += "<text x=\"\(fmt(left + w + 6))\" y=\"\(fmt(y + 15))\">\(v)</text>\n"
        }
        s += "</svg>\n"
        return s
    }

    static func fmt(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }
    static func opt(_ v: Double?) -> String { v.map { fmt($0) } ?? "–" }
    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
