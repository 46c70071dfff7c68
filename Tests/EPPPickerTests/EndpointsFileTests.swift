import Foundation
import Testing
@testable import EPPPicker

@Suite struct EndpointsFileTests {
    @Test func goodYAML() throws {
        let yaml = """
        endpoints:
        - name: vllm-0
          namespace: prod
          address: "10.0.0.1"
          port: "8000"
          labels:
            llm-d.ai/role: decode
            inference.networking.k8s.io/engine-type: sglang
        - name: vllm-1
          address: 10.0.0.2
          port: 8001
        - name: vllm-2
          address: "192.168.1.3"
          port: 65535
          labels: {llm-d.ai/role: both, zone: "a"}
        """
        let eps = try EndpointsFile.parse(text: yaml)
        #expect(eps.count == 3)
        #expect(eps[0] == EndpointSpec(name: "vllm-0", namespace: "prod", address: "10.0.0.1", port: 8000,
                                       labels: ["llm-d.ai/role": "decode", "inference.networking.k8s.io/engine-type": "sglang"]))
        #expect(eps[0].hostPort == "10.0.0.1:8000")
        #expect(eps[0].namespacedName == "prod/vllm-0")
        #expect(eps[0].engineType == .sglang)
        #expect(eps[1].namespace == "default")
        #expect(eps[1].port == 8001)
        #expect(eps[1].labels.isEmpty)
        #expect(eps[1].engineType == .vllm)
        #expect(eps[1].role == nil)
        #expect(eps[1].servesDecode && !eps[1].servesPrefill)
        #expect(eps[2].role == .prefillDecode)
        #expect(eps[2].servesDecode && eps[2].servesPrefill && !eps[2].servesEncode)
        #expect(eps[2].labels["zone"] == "a")
    }

    @Test func goodJSON() throws {
        let json = """
        {
        \t"endpoints": [
        \t\t{"name": "a", "address": "127.0.0.1", "port": "9000", "labels": {"llm-d.ai/role": "prefill"}},
        \t\t{"name": "b", "namespace": "ns", "address": "127.0.0.2", "port": 9001}
        \t]
        }
        """
        let eps = try EndpointsFile.parse(text: json)
        #expect(eps.map(\.hostPort) == ["127.0.0.1:9000", "127.0.0.2:9001"])
        #expect(eps[0].role == .prefill)
        #expect(!eps[0].servesDecode)
        #expect(eps[1].namespacedName == "ns/b")
    }

    @Test func emptyList() throws {
        #expect(try EndpointsFile.parse(text: "endpoints: []").isEmpty)
        #expect(try EndpointsFile.parse(text: "endpoints:\n").isEmpty)
    }

    @Test func allProblemsReportedTogether() throws {
        let yaml = """
        endpoints:
        - name: ok-0
          address: 10.0.0.1
          port: 8000
        - address: 10.0.0.2
          port: 8000
        - name: ok-0
          address: 10.0.0.3
          port: 8000
        - name: host
          address: vllm.example.com
          port: 8000
        - name: v6
          address: "::1"
          port: 8000
        - name: badport
          address: 10.0.0.4
          port: "80a"
        - name: zeroport
          address: 10.0.0.5
          port: 0
        - name: bigport
          address: 10.0.0.6
          port: 65536
        - name: noaddr
          port: 1
        - name: typo
          adress: 10.0.0.7
          port: 1
        - name: leading-zero
          address: 010.0.0.1
          port: 1
        - just-a-string
        extra: true
        """
        do {
            _ = try EndpointsFile.parse(text: yaml)
            Issue.record("expected failure")
        } catch let e as EndpointsFileError {
            let d = e.description
            let expected: [(Int?, String?, String)] = [
                (1, nil, "name"), (2, "ok-0", "name"), (3, "host", "address"), (4, "v6", "address"),
                (5, "badport", "port"), (6, "zeroport", "port"), (7, "bigport", "port"), (8, "noaddr", "address"),
                (9, "typo", "adress"), (9, "typo", "address"), (10, "leading-zero", "address"), (11, nil, "entry"),
                (nil, nil, "extra"),
            ]
            for (i, name, field) in expected {
                #expect(e.problems.contains(where: { $0.index == i && $0.name == name && $0.field == field }),
                        "missing problem \(String(describing: i)) \(String(describing: name)) \(field) in \(d)")
            }
            #expect(e.problems.count == expected.count, "\(d)")
            #expect(d.contains("endpoints[2] (ok-0): name: duplicate name (first used by endpoints[0])"))
            #expect(d.contains("endpoints[3] (host): address: \"vllm.example.com\" is not an IPv4 literal (hostnames are not supported)"))
            #expect(d.contains("endpoints[5] (badport): port: \"80a\" is not a port number in 1..65535"))
            #expect(d.contains("endpoints[1]: name: missing"))
            #expect(d.contains("extra: unknown top-level key"))
            #expect(d.hasPrefix("invalid endpoints file (13 problems):"))
        }
    }

    @Test func lenientReload() throws {
        let yaml = """
        endpoints:
        - {name: a, address: 10.0.0.1, port: 1}
        - {name: a, address: 10.0.0.2, port: 2}
        - {name: b, address: nope, port: 3}
        - {name: c, address: 10.0.0.3, port: "3"}
        """
        let (eps, problems) = try EndpointsFile.parseSkippingInvalid(text: yaml)
        #expect(eps.map(\.name) == ["a", "c"])
        #expect(eps[0].address == "10.0.0.1")
        #expect(problems.count == 2)
        // structurally broken files still throw in lenient mode
        #expect(throws: EndpointsFileError.self) { try EndpointsFile.parseSkippingInvalid(text: "endpoints: 5") }
        #expect(throws: EndpointsFileError.self) { try EndpointsFile.parseSkippingInvalid(text: "foo: []") }
        #expect(throws: EndpointsFileError.self) { try EndpointsFile.parseSkippingInvalid(text: "[1, 2]") }
        #expect(throws: EndpointsFileError.self) { try EndpointsFile.parseSkippingInvalid(text: "endpoints: [\n") }
        #expect(throws: EndpointsFileError.self) { try EndpointsFile.parseSkippingInvalid(text: "") }
    }

    @Test func oversizeAndFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("epp-endpoints-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        let good = dir.appendingPathComponent("good.yaml")
        try "endpoints:\n- name: x\n  address: 127.0.0.1\n  port: 8000\n".write(to: good, atomically: true, encoding: .utf8)
        #expect(try EndpointsFile.load(path: good.path).map(\.hostPort) == ["127.0.0.1:8000"])

        let big = dir.appendingPathComponent("big.yaml")
        var text = "endpoints: []\n"
        text += String(repeating: "# padding padding padding padding padding padding padding padding\n", count: 17_000)
        #expect(text.utf8.count > EndpointsFile.maxBytes)
        try text.write(to: big, atomically: true, encoding: .utf8)
        do {
            _ = try EndpointsFile.load(path: big.path)
            Issue.record("oversize accepted")
        } catch let e as EndpointsFileError {
            #expect(e.description.contains("limit"))
            #expect(e.path == big.path)
        }
        #expect(throws: EndpointsFileError.self) { try EndpointsFile.parse(text: text) }

        #expect(throws: EndpointsFileError.self) { try EndpointsFile.load(path: dir.appendingPathComponent("missing.yaml").path) }

        let bad = dir.appendingPathComponent("bad.yaml")
        try "endpoints:\n- name: x\n  address: 127.0.0.1\n".write(to: bad, atomically: true, encoding: .utf8)
        do {
            _ = try EndpointsFile.load(path: bad.path)
            Issue.record("bad accepted")
        } catch let e as EndpointsFileError {
            #expect(e.description == "invalid endpoints file \(bad.path): endpoints[0] (x): port: missing")
        }
    }

    @Test func duplicateYAMLKeyIsAnError() {
        #expect(throws: EndpointsFileError.self) {
            try EndpointsFile.parse(text: "endpoints:\n- name: a\n  name: b\n  address: 10.0.0.1\n  port: 1\n")
        }
    }

    @Test func ipv4Literal() {
        for s in ["0.0.0.0", "10.0.0.1", "255.255.255.255", "192.168.1.1", "1.2.3.0"] { #expect(isIPv4Literal(s), "\(s)") }
        for s in ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "01.2.3.4", "1.2.3.04", "a.b.c.d", "1..2.3", "1.2.3.", ".1.2.3",
                  "::1", "1.2.3.4 ", "1.2.3.1000", "localhost"] {
            #expect(!isIPv4Literal(s), "\(s)")
        }
    }

    @Test func roles() {
        let table: [(String?, Bool, Bool, Bool)] = [
            (nil, true, false, false), ("decode", true, false, false), ("prefill", false, true, false),
            ("prefill-decode", true, true, false), ("both", true, true, false), ("encode", false, false, true),
            ("encode-prefill", false, true, true), ("encode-prefill-decode", true, true, true), ("bogus", false, false, false),
        ]
        for (label, d, p, e) in table {
            var spec = EndpointSpec(name: "x", address: "10.0.0.1", port: 1)
            if let label { spec.labels[Role.labelKey] = label }
            #expect(spec.servesDecode == d, "\(String(describing: label))")
            #expect(spec.servesPrefill == p, "\(String(describing: label))")
            #expect(spec.servesEncode == e, "\(String(describing: label))")
        }
        #expect(Role(labelValue: "both") == .prefillDecode)
        #expect(Role(labelValue: "Decode") == nil)
    }
}
