import Foundation
import Testing
@testable import EPPPicker

private func json(_ text: String) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

private func pod(_ name: String, ip: String? = "10.0.0.1", ready: Bool = true, labels: [String: String] = ["app": "vllm"],
                 deleting: Bool = false, annotations: [String: String] = [:], namespace: String = "ns") -> KubernetesPod {
    KubernetesPod(meta: KubernetesObjectMeta(name: name, namespace: namespace, resourceVersion: "1", labels: labels,
                                             annotations: annotations, deleting: deleting),
                  ipv4: ip, ready: ready)
}

private func tempDir() throws -> String {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("k8s-tests-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

@Suite struct KubernetesDiscoveryTests {
    // MARK: pods

    @Test func podDecodingReadsReadinessIPAndDeletion() throws {
        let p = try KubernetesPod.decode(json("""
            {"metadata": {"name": "vllm-0", "namespace": "prod", "resourceVersion": "42", "labels": {"app": "vllm", "n": 3}},
             "status": {"podIP": "10.1.2.3", "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}}
            """))
        #expect(p.meta.name == "vllm-0" && p.meta.namespace == "prod" && p.meta.resourceVersion == "42")
        #expect(p.meta.labels == ["app": "vllm"])   // non-string label values are dropped
        #expect(p.ipv4 == "10.1.2.3" && p.ready && !p.meta.deleting && p.isServing)

        let notReady = try KubernetesPod.decode(json("""
            {"metadata": {"name": "a"}, "status": {"podIP": "10.1.2.3", "conditions": [{"type": "Ready", "status": "False"}]}}
            """))
        #expect(!notReady.ready && !notReady.isServing)
        let noStatus = try KubernetesPod.decode(json(#"{"metadata": {"name": "a"}}"#))
        #expect(noStatus.ipv4 == nil && !noStatus.isServing)
        let deleting = try KubernetesPod.decode(json("""
            {"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"},
             "status": {"podIP": "10.1.2.3", "conditions": [{"type": "Ready", "status": "True"}]}}
            """))
        #expect(deleting.meta.deleting && !deleting.isServing)
        let dualStack = try KubernetesPod.decode(json("""
            {"metadata": {"name": "a"}, "status": {"podIP": "fd00::5", "podIPs": [{"ip": "fd00::5"}, {"ip": "10.9.9.9"}],
             "conditions": [{"type": "Ready", "status": "True"}]}}
            """))
        #expect(dualStack.ipv4 == "10.9.9.9" && dualStack.isServing)
        let v6only = try KubernetesPod.decode(json("""
            {"metadata": {"name": "a"}, "status": {"podIP": "fd00::5", "conditions": [{"type": "Ready", "status": "True"}]}}
            """))
        #expect(v6only.ipv4 == nil && !v6only.isServing)
        #expect(throws: KubernetesDecodeError.self) { try KubernetesPod.decode(json(#"{"metadata": {}}"#)) }
        #expect(throws: KubernetesDecodeError.self) { try KubernetesPod.decode(json(#"{"status": {}}"#)) }
    }

    @Test func oneEndpointPerServingPodAndPort() {
        let sel = KubernetesLabelSelector(matchLabels: ["app": "vllm"])
        let pods = [
            pod("b", ip: "10.0.0.2", labels: ["app": "vllm", "llm-d.ai/role": "prefill"]),
            pod("a", ip: "10.0.0.1", labels: ["app": "vllm", "inference.networking.k8s.io/engine-type": "sglang"]),
            pod("not-ready", ip: "10.0.0.3", ready: false),
            pod("no-ip", ip: nil),
            pod("going", ip: "10.0.0.4", deleting: true),
            pod("other", ip: "10.0.0.5", labels: ["app": "other"]),
        ]
        let one = KubernetesEndpointMapping.endpoints(pods: pods, targetPorts: [8000], selector: sel)
        #expect(one.map(\.name) == ["a", "b"])
        #expect(one.map(\.hostPort) == ["10.0.0.1:8000", "10.0.0.2:8000"])
        #expect(one.allSatisfy { $0.namespace == "ns" })
        #expect(one[0].engineType == .sglang)
        #expect(one[1].role == .prefill)

        let two = KubernetesEndpointMapping.endpoints(pods: pods, targetPorts: [8000, 8001], selector: sel)
        #expect(two.map(\.name) == ["a-rank-0", "a-rank-1", "b-rank-0", "b-rank-1"])
        #expect(two.map(\.port) == [8000, 8001, 8000, 8001])
        #expect(two[3].labels["llm-d.ai/role"] == "prefill")

        // active-ports narrows a pod's ports but keeps the rank numbering of targetPorts
        let narrowed = KubernetesEndpointMapping.endpoints(
            pods: [pod("a", annotations: [KubernetesPod.activePortsAnnotation: "8001, 9999"])], targetPorts: [8000, 8001], selector: sel)
        #expect(narrowed.map(\.name) == ["a-rank-1"])
        let unparsable = KubernetesEndpointMapping.endpoints(
            pods: [pod("a", annotations: [KubernetesPod.activePortsAnnotation: "x"])], targetPorts: [8000, 8001], selector: sel)
        #expect(unparsable.count == 2)
        #expect(KubernetesEndpointMapping.endpoints(pods: [pod("a", namespace: "")], targetPorts: [1], selector: sel)[0].namespace == "default")
    }

    // MARK: InferencePool

    @Test func inferencePoolDecoding() throws {
        let spec = try InferencePoolSpec.decode(json("""
            {"metadata": {"name": "p"}, "spec": {"selector": {"matchLabels": {"app": "vllm"}},
             "targetPorts": [{"number": 8000}, {"number": 8001}], "endpointPickerRef": {"name": "epp"}}}
            """))
        #expect(spec == InferencePoolSpec(selector: ["app": "vllm"], targetPorts: [8000, 8001]))
        let bad = [
            #"{"spec": {"targetPorts": [{"number": 8000}]}}"#,
            #"{"spec": {"selector": {"matchLabels": {}}, "targetPorts": [{"number": 8000}]}}"#,
            #"{"spec": {"selector": {"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "a"}]}, "targetPorts": [{"number": 1}]}}"#,
            #"{"spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": []}}"#,
            #"{"spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": [{"number": 0}]}}"#,
            #"{"spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": [{"number": 80.5}]}}"#,
            #"{"spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": [{"number": "8000"}]}}"#,
            #"{"spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": [{"number": 8000}, {"number": 8000}]}}"#,
            #"{"spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": ["#
                + (1...9).map { #"{"number": \#(8000 + $0)}"# }.joined(separator: ",") + "]}}",   // more than 8
            #"{"metadata": {"name": "p"}}"#,
        ]
        for text in bad {
            #expect(throws: KubernetesDecodeError.self, "\(text)") { try InferencePoolSpec.decode(json(text)) }
        }
    }

    // MARK: wire format

    @Test func watchEventLines() throws {
        let added = try KubernetesWatchEvent.decode(line: Array(#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a","resourceVersion":"7"}}}"#.utf8))
        #expect(added.kind == .added && added.resourceVersion == "7")
        let bookmark = try KubernetesWatchEvent.decode(line: Array(#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"12345"}}}"#.utf8))
        #expect(bookmark.kind == .bookmark && bookmark.resourceVersion == "12345")
        let error = try KubernetesWatchEvent.decode(line: Array("""
            {"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}
            """.utf8))
        #expect(error.kind == .error)
        let st = KubernetesStatus.decode(error.object)
        #expect(st.code == 410 && st.reason == "Expired" && st.isExpired)
        #expect(!KubernetesStatus(code: 500, reason: "InternalError", message: "").isExpired)
        for bad in ["", "not json", #"{"object":{}}"#, #"{"type":"ADDED"}"#, #"{"type":"SYNC","object":{}}"#, "[1]"] {
            #expect(throws: KubernetesDecodeError.self, "\(bad)") { try KubernetesWatchEvent.decode(line: Array(bad.utf8)) }
        }
    }

    @Test func lineSplitterHandlesChunkBoundaries() throws {
        var s = KubernetesLineSplitter(maxLineBytes: 16)
        func feed(_ text: String) throws -> [String] {
            try Array(text.utf8).withUnsafeBytes { try s.feed($0) }.map { String(decoding: $0, as: UTF8.self) }
        }
        #expect(try feed("{\"a\"") == [])
        #expect(try feed(":1}\n{\"b\":2}\r\n\n{") == ["{\"a\":1}", "{\"b\":2}"])
        #expect(try feed("}\n") == ["{}"])
        #expect(throws: KubernetesDecodeError.self) { try feed("0123456789abcdefXYZ") }
        s.reset()
        #expect(try feed("ok\n") == ["ok"])
    }

    @Test func listPages() throws {
        let page = try KubernetesListPage.decode(body: Array("""
            {"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"99","continue":"tok"},"items":[{"metadata":{"name":"a"}},7]}
            """.utf8))
        #expect(page.resourceVersion == "99" && page.continueToken == "tok" && page.items.count == 1)
        let empty = try KubernetesListPage.decode(body: Array(#"{"metadata":{"resourceVersion":"5"},"items":null}"#.utf8))
        #expect(empty.items.isEmpty && empty.continueToken.isEmpty)
        #expect(throws: KubernetesDecodeError.self) { try KubernetesListPage.decode(body: Array(#"{"items":[]}"#.utf8)) }
        #expect(throws: KubernetesDecodeError.self) { try KubernetesListPage.decode(body: Array("<html>".utf8)) }
        #expect(KubernetesStatus.decode(body: Array(#"{"kind":"Status","code":403,"reason":"Forbidden","message":"no"}"#.utf8))
                == KubernetesStatus(code: 403, reason: "Forbidden", message: "no"))
        #expect(KubernetesStatus.decode(body: Array("forbidden".utf8)) == nil)
        #expect(kubernetesQueryEscape("app=vllm,tier in (a)") == "app%3Dvllm%2Ctier%20in%20%28a%29")
    }

    // MARK: selectors and ports

    @Test func labelSelectorParsing() throws {
        let s = try KubernetesLabelSelector.parse("tier=gpu, app==vllm,llm-d.ai/inference-serving=true")
        #expect(s.matchLabels == ["app": "vllm", "tier": "gpu", "llm-d.ai/inference-serving": "true"])
        #expect(s.description == "app=vllm,llm-d.ai/inference-serving=true,tier=gpu")
        #expect(s.matches(["app": "vllm", "tier": "gpu", "llm-d.ai/inference-serving": "true", "x": "y"]))
        #expect(!s.matches(["app": "vllm", "tier": "cpu", "llm-d.ai/inference-serving": "true"]))
        #expect(try KubernetesLabelSelector.parse("a=").matchLabels == ["a": ""])
        for bad in ["", "app", "app=vllm,", "=x", "a b=c", "a=b c", "Bad_Prefix/x=y", "a=b,a=c", "-a=b", "a=-b",
                    String(repeating: "k", count: 64) + "=v", "a=" + String(repeating: "v", count: 64), "a!=b", "a/b/c=d"] {
            #expect(throws: KubernetesConfigError.self, "\(bad)") { try KubernetesLabelSelector.parse(bad) }
        }
        #expect(try parseKubernetesTargetPorts("8000") == [8000])
        #expect(try parseKubernetesTargetPorts("8000, 8001") == [8000, 8001])
        for bad in ["", "0", "65536", "80,80", "x", "1,2,3,4,5,6,7,8,9", "8000,"] {
            #expect(throws: KubernetesConfigError.self, "\(bad)") { try parseKubernetesTargetPorts(bad) }
        }
    }

    // MARK: kubeconfig / in-cluster

    @Test func kubeconfigUsesCurrentContext() throws {
        let dir = try tempDir()
        try "PEM".write(toFile: dir + "/client.crt", atomically: true, encoding: .utf8)
        try "KEY".write(toFile: dir + "/client.key", atomically: true, encoding: .utf8)
        let ca = Data("-----BEGIN CERTIFICATE-----\n".utf8).base64EncodedString()
        let text = """
        apiVersion: v1
        kind: Config
        current-context: prod
        contexts:
        - {name: dev, context: {cluster: dev, user: dev}}
        - {name: prod, context: {cluster: prod, user: admin, namespace: inference}}
        clusters:
        - {name: dev, cluster: {server: "https://dev:6443"}}
        - name: prod
          cluster:
            server: https://10.0.0.1:6443/
            certificate-authority-data: \(ca)
        users:
        - {name: dev, user: {token: dev-token}}
        - name: admin
          user:
            client-certificate: client.crt
            client-key: \(dir)/client.key
        """
        let c = try KubernetesClientConfig.kubeconfig(text: text, baseDirectory: dir)
        #expect(c.server == "https://10.0.0.1:6443")
        #expect(c.caData == Array("-----BEGIN CERTIFICATE-----\n".utf8) && c.caFile == nil)
        #expect(c.clientCertFile == dir + "/client.crt" && c.clientKeyFile == dir + "/client.key")
        #expect(c.token == nil && c.currentToken() == nil && c.namespace == "inference" && !c.insecureSkipTLSVerify)

        try "file-token\n".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        let tokenFile = try KubernetesClientConfig.kubeconfig(text: """
            current-context: x
            contexts: [{name: x, context: {cluster: c, user: u}}]
            clusters: [{name: c, cluster: {server: "http://127.0.0.1:8001", insecure-skip-tls-verify: true}}]
            users: [{name: u, user: {tokenFile: token}}]
            """, baseDirectory: dir)
        #expect(tokenFile.currentToken() == "file-token" && tokenFile.insecureSkipTLSVerify && tokenFile.namespace == nil)
    }

    @Test func kubeconfigErrorsAreClear() throws {
        let dir = try tempDir()
        func err(_ text: String) -> String {
            do {
                _ = try KubernetesClientConfig.kubeconfig(text: text, baseDirectory: dir)
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        let head = "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        let cluster = "clusters: [{name: c, cluster: {server: \"https://k:6443\"}}]\n"
        #expect(err("a: [") .contains("not valid YAML"))
        #expect(err("- 1\n").contains("expected a mapping"))
        #expect(err("contexts: []\n").contains("current-context is not set"))
        #expect(err("current-context: y\n" + String(head.dropFirst(19)) + cluster).contains("no entry named 'y'"))
        #expect(err(head + "clusters: [{name: c, cluster: {}}]\nusers: [{name: u, user: {}}]").contains("server is not set"))
        #expect(err(head + "clusters: [{name: c, cluster: {server: \"k:6443\"}}]\nusers: [{name: u, user: {}}]").contains("http(s) URL"))
        #expect(err(head + cluster).contains("users is missing"))
        #expect(err(head + cluster + "users: [{name: u, user: {exec: {command: aws}}}]").contains("exec and auth-provider"))
        #expect(err(head + cluster + "users: [{name: u, user: {username: a, password: b}}]").contains("basic authentication"))
        #expect(err(head + cluster + "users: [{name: u, user: {client-certificate-data: UEVN}}]").contains("given together"))
        #expect(err(head + cluster + "users: [{name: u, user: {client-key-data: '!!!'}}]").contains("not valid base64"))
        #expect(err(head + cluster + "users: [{name: u, user: {tokenFile: nope}}]").contains("tokenFile \(dir)/nope is not readable"))
        #expect(err(head + "clusters: [{name: c, cluster: {server: \"https://k\", insecure-skip-tls-verify: maybe}}]\nusers: [{name: u, user: {}}]")
                .contains("true or false"))
        #expect(throws: KubernetesConfigError.self) { try KubernetesClientConfig.kubeconfig(path: dir + "/missing") }
    }

    @Test func inClusterConfig() throws {
        let dir = try tempDir()
        let env = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
        #expect(throws: KubernetesConfigError.self) { try KubernetesClientConfig.inCluster(environment: env, serviceAccountDir: dir) }
        try "tok\n".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        #expect(throws: KubernetesConfigError.self) { try KubernetesClientConfig.inCluster(environment: env, serviceAccountDir: dir) }
        try "CA".write(toFile: dir + "/ca.crt", atomically: true, encoding: .utf8)
        try "inference\n".write(toFile: dir + "/namespace", atomically: true, encoding: .utf8)
        let c = try KubernetesClientConfig.inCluster(environment: env, serviceAccountDir: dir)
        #expect(c.server == "https://10.96.0.1:443" && c.caFile == dir + "/ca.crt" && c.namespace == "inference")
        #expect(c.currentToken() == "tok")
        try "rotated".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        #expect(c.currentToken() == "rotated")   // re-read: bound tokens rotate
        let v6 = try KubernetesClientConfig.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"],
                                                      serviceAccountDir: dir)
        #expect(v6.server == "https://[fd00::1]:6443")
        #expect(throws: KubernetesConfigError.self) { try KubernetesClientConfig.inCluster(environment: [:], serviceAccountDir: dir) }
        #expect(throws: KubernetesConfigError.self) {
            try KubernetesClientConfig.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "https"], serviceAccountDir: dir)
        }
        // flags: in-cluster wins over KUBECONFIG; namespace order flag ⇒ NAMESPACE ⇒ config ⇒ default
        let flags = KubernetesDiscoveryFlags(poolName: "p")
        let fromFlags = try flags.clientConfig(environment: env.merging(["KUBECONFIG": "/nope"]) { a, _ in a }, serviceAccountDir: dir)
        #expect(fromFlags == c)
        #expect(flags.namespace(config: c, environment: [:]) == "inference")
        #expect(flags.namespace(config: c, environment: ["NAMESPACE": "envns"]) == "envns")
        #expect(KubernetesDiscoveryFlags(poolName: "p", poolNamespace: "flagns").namespace(config: c, environment: ["NAMESPACE": "envns"]) == "flagns")
        #expect(flags.namespace(config: KubernetesClientConfig(server: "http://x"), environment: [:]) == "default")
        #expect(throws: KubernetesConfigError.self) { try flags.clientConfig(environment: [:], serviceAccountDir: dir) }
    }

    @Test func flagCombinations() throws {
        #expect(try KubernetesDiscoveryFlags().validate(endpointsFile: nil) == nil)
        #expect(try KubernetesDiscoveryFlags().validate(endpointsFile: "/e.yaml") == nil)
        #expect(try KubernetesDiscoveryFlags(poolName: "my-pool").validate(endpointsFile: nil) == .inferencePool(name: "my-pool"))
        #expect(try KubernetesDiscoveryFlags(endpointSelector: "app=vllm", endpointTargetPorts: "8000,8001").validate(endpointsFile: nil)
                == .selector(KubernetesLabelSelector(matchLabels: ["app": "vllm"]), targetPorts: [8000, 8001]))
        let bad: [(KubernetesDiscoveryFlags, String?, String)] = [
            (KubernetesDiscoveryFlags(poolName: "p"), "/e.yaml", "mutually exclusive"),
            (KubernetesDiscoveryFlags(poolName: "p", endpointSelector: "a=b"), nil, "mutually exclusive"),
            (KubernetesDiscoveryFlags(poolNamespace: "ns"), nil, "--pool-namespace needs"),
            (KubernetesDiscoveryFlags(kubeconfig: "/k"), nil, "--kubeconfig needs"),
            (KubernetesDiscoveryFlags(endpointTargetPorts: "8000"), nil, "--endpoint-target-ports needs"),
            (KubernetesDiscoveryFlags(poolName: "p", endpointTargetPorts: "8000"), nil, "spec.targetPorts"),
            (KubernetesDiscoveryFlags(poolName: "P_1"), nil, "not a valid object name"),
            (KubernetesDiscoveryFlags(poolName: "p", poolNamespace: "Prod"), nil, "not a valid namespace"),
            (KubernetesDiscoveryFlags(endpointSelector: "a=b"), nil, "needs --endpoint-target-ports"),
            (KubernetesDiscoveryFlags(endpointSelector: "a", endpointTargetPorts: "1"), nil, "--endpoint-selector: "),
            (KubernetesDiscoveryFlags(endpointSelector: "a=b", endpointTargetPorts: "0"), nil, "--endpoint-target-ports: "),
        ]
        for (flags, file, message) in bad {
            do {
                _ = try flags.validate(endpointsFile: file)
                Issue.record("expected an error for \(flags)")
            } catch {
                #expect("\(error)".contains(message), "\(error)")
            }
        }
    }
}
