import EPPProtobuf
import Foundation
import Testing

/// Runs Tests/tools/proto_crosscheck.py (real protobuf runtime). Fails — never skips —
/// when python3 or the protobuf/grpcio-tools modules are missing.
enum CrossCheck {
    static let repoRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // EPPProtobufTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()
    static let script = repoRoot.appendingPathComponent("Tests/tools/proto_crosscheck.py").path

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ arguments: [String]) throws -> Result {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("epp-proto-crosscheck-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let outURL = dir.appendingPathComponent("stdout")
        let errURL = dir.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script] + arguments
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try out.close()
        try err.close()
        return Result(status: process.terminationStatus,
                      stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
                      stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
    }

    static func writeTemp(_ text: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("epp-proto-\(UUID().uuidString).txt")
        try Data(text.utf8).write(to: url)
        return url
    }
}

@Suite("Cross-check against the real protobuf runtime (python3)")
struct CrossCheckTests {
    /// Real protobuf serializes random ProcessingRequests; our decoder must expose exactly
    /// what real protobuf parsed from the same bytes.
    @Test func requestsSerializedByRealProtobuf() throws {
        let result = try CrossCheck.run(["gen-requests", "500", "20240611"])
        try #require(result.status == 0, "proto_crosscheck.py gen-requests failed (\(result.status)): \(result.stderr)")
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: true)
        try #require(lines.count == 500, "expected 500 lines, got \(lines.count); stderr: \(result.stderr)")
        var failures = 0
        for (i, line) in lines.enumerated() {
            guard let tab = line.firstIndex(of: "\t") else {
                Issue.record("line \(i + 1): no tab")
                failures += 1
                continue
            }
            let input = hex(String(line[..<tab]))
            let expected = String(line[line.index(after: tab)...])
            do {
                let decoded = try ProcessingRequest.decode(input)
                let actual = describe(decoded, buffer: input).canonical
                if actual != expected {
                    failures += 1
                    if failures <= 3 {
                        Issue.record("line \(i + 1) mismatch\n input:    \(line[..<tab].prefix(400))\n protobuf: \(expected.prefix(2000))\n ours:     \(actual.prefix(2000))")
                    }
                }
            } catch {
                failures += 1
                if failures <= 3 { Issue.record("line \(i + 1): decode failed: \(error)") }
            }
        }
        #expect(failures == 0, "\(failures) of \(lines.count) requests mismatched")
    }

    /// Our encoder's bytes for random ProcessingResponses are parsed by real protobuf,
    /// compared with the model, and must equal real protobuf's deterministic re-serialization.
    @Test func responsesParsedByRealProtobuf() throws {
        var rng = SplitMix64(seed: 0xE9_9_0001)
        var text = ""
        // The vectors first, then random messages.
        let fixed: [ProcessingResponse] = [
            pickResponse("10.0.0.1:8000"),
            pickResponse("10.0.0.3:8000", extraHeaders: [HeaderValueOption(key: "x-prefiller-host-port", rawValue: "10.0.0.9:8000")],
                         remove: ["x-gateway-inference-objective"]),
            ProcessingResponse(.requestBody(StreamedBodyResponse(body: bytes("hello"), endOfStream: true))),
            ProcessingResponse(.responseHeaders(nil)),
            ProcessingResponse(.immediate(ImmediateResponse(status: 503, body: "no endpoints", details: "epp_no_endpoints"))),
            ProcessingResponse(nil, overrideMessageTimeoutSeconds: 5),
            ProcessingResponse(.responseBody(StreamedBodyResponse(endOfStream: true)),
                               dynamicMetadata: ["envoy.lb": .structValue(["x-gateway-inference-request-cost": .number(10)])]),
        ]
        var responses = fixed
        while responses.count < 500 { responses.append(randomResponse(&rng)) }
        for r in responses {
            text += hexString(r.encoded()) + "\t" + describe(r).canonical + "\n"
        }
        let file = try CrossCheck.writeTemp(text)
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try CrossCheck.run(["check-responses", file.path])
        #expect(result.status == 0, "proto_crosscheck.py check-responses failed (\(result.status)):\n\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("500 messages OK"))
    }

    @Test func healthListParsedByRealProtobuf() throws {
        var text = ""
        let all: [ServingStatus] = [.unknown, .serving, .notServing, .serviceUnknown]
        var rng = SplitMix64(seed: 7)
        for _ in 0..<50 {
            var keys = Set<String>()
            for _ in 0..<rng.int(0...4) { keys.insert(randomText(&rng)) }
            let statuses = keys.sorted(by: upbKeyOrder).map { ($0, rng.pick(all)) }
            let json = JSON.object(statuses.map { ($0.0, .int(Int64($0.1.rawValue))) })
            text += hexString(HealthListResponse.encode(statuses: statuses)) + "\t" + json.canonical + "\n"
        }
        let file = try CrossCheck.writeTemp(text)
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try CrossCheck.run(["check-health", file.path])
        #expect(result.status == 0, "proto_crosscheck.py check-health failed (\(result.status)):\n\(result.stdout)\n\(result.stderr)")
    }
}
