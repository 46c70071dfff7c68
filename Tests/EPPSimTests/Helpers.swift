import AsyncHTTPClient
import Foundation
import Testing

@testable import EPPSim

/// Start an in-process fleet on free loopback ports, fast time scale by default.
func startFleet(_ configure: (inout SimulatorConfig) -> Void = { _ in }) async throws -> SimulatorFleet {
    var c = SimulatorConfig()
    c.host = "127.0.0.1"
    c.port = 0
    c.timeScale = 0.01
    configure(&c)
    return try await SimulatorFleet.start(config: c)
}

/// Run `body` with a fleet and always stop it.
func withFleet<T>(_ configure: (inout SimulatorConfig) -> Void = { _ in },
                  _ body: (SimulatorFleet) async throws -> T) async throws -> T {
    let fleet = try await startFleet(configure)
    do {
        let r = try await body(fleet)
        await fleet.stop()
        return r
    } catch {
        await fleet.stop()
        throw error
    }
}

struct HTTPResult: Sendable {
    var status: Int
    var headers: [String: String]
    var body: String
    var json: JSON? { try? JSON.parse(body) }
}

let testClient = HTTPClient.shared

func http(_ method: String, _ url: String, body: JSON? = nil, timeout: Int64 = 20) async throws -> HTTPResult {
    var req = HTTPClientRequest(url: url)
    req.method = .init(rawValue: method)
    if let body {
        req.headers.add(name: "content-type", value: "application/json")
        req.body = .bytes(Array(body.serialized().utf8))
    }
    let resp = try await testClient.execute(req, timeout: .seconds(timeout))
    let buf = try await resp.body.collect(upTo: 16 << 20)
    var headers: [String: String] = [:]
    for h in resp.headers { headers[h.name.lowercased()] = h.value }
    return HTTPResult(status: Int(resp.status.code), headers: headers, body: String(decoding: buf.readableBytesView, as: UTF8.self))
}

func post(_ url: String, _ body: JSON) async throws -> HTTPResult { try await http("POST", url, body: body) }
func get(_ url: String) async throws -> HTTPResult { try await http("GET", url) }

/// Parse a Prometheus text page into `name{labels}` → value (labels as printed).
func parseMetrics(_ text: String) -> [String: Double] {
    var out: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let sp = line.lastIndex(of: " ") else { continue }
        let key = String(line[..<sp])
        let name = key.split(separator: "{").first.map(String.init) ?? key
        if let v = Double(line[line.index(after: sp)...]) {
            out[key] = v
            if out[name] == nil { out[name] = v }
        }
    }
    return out
}

func metrics(_ base: String) async throws -> [String: Double] {
    parseMetrics(try await get(base + "/metrics").body)
}

/// Poll until `condition` holds or `timeout` seconds pass.
func eventually(timeout: Double = 10, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(5))
    }
    return try await condition()
}

/// A completions request with explicit token ids.
func idsPrompt(_ ids: [Int], maxTokens: Int = 2, extra: [String: JSON] = [:]) -> JSON {
    var o: [String: JSON] = ["model": "meta-llama/Llama-3.1-8B-Instruct", "prompt": .array(ids.map { .int($0) }), "max_tokens": .int(maxTokens)]
    for (k, v) in extra { o[k] = v }
    return .object(o)
}

extension JSON {
    func path(_ keys: String...) -> JSON? {
        var cur: JSON? = self
        for k in keys {
            if let i = Int(k), let a = cur?.arrayValue { cur = i < a.count ? a[i] : nil } else { cur = cur?[k] }
        }
        return cur
    }
}

func cachedTokens(_ r: HTTPResult) -> Int? { r.json?.path("usage", "prompt_tokens_details", "cached_tokens")?.intValue }
