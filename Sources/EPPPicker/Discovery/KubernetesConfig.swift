// How `epp` reaches the Kubernetes API server: in-cluster (service-account token, CA and namespace under
// /var/run/secrets/kubernetes.io/serviceaccount, KUBERNETES_SERVICE_HOST/PORT) or a kubeconfig file
// (current-context only). Pure parsing; nothing here talks to the network.

import Foundation
import Yams

/// A configuration problem; the message names the file and field so `epp: error: …` is actionable.
public struct KubernetesConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Connection settings for the API server. Immutable; shared by the discovery loop.
public struct KubernetesClientConfig: Sendable, Equatable {
    /// `https://host:port` (or `http://…` behind `kubectl proxy`), no trailing slash.
    public var server: String
    /// PEM CA bundle: a file, or inline bytes (kubeconfig `certificate-authority-data`).
    public var caFile: String?
    public var caData: [UInt8]?
    /// Bearer token, inline; or a file re-read before every request (bound service-account tokens rotate).
    public var token: String?
    public var tokenFile: String?
    /// Client certificate and key (PEM), as files or inline bytes.
    public var clientCertFile: String?
    public var clientCertData: [UInt8]?
    public var clientKeyFile: String?
    public var clientKeyData: [UInt8]?
    public var insecureSkipTLSVerify: Bool = false
    /// Namespace of the context / service account, if known (default for `--pool-namespace`).
    public var namespace: String?

    public init(server: String) { self.server = server }

    public static let serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The bearer token to send now, if any. A token file that can't be read yields nil (the request then gets
    /// 401, which the reflector logs and retries) rather than failing the process.
    public func currentToken() -> String? {
        if let t = token, !t.isEmpty { return t }
        guard let f = tokenFile, let d = FileManager.default.contents(atPath: f) else { return nil }
        let t = String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return t.isEmpty ? nil : t
    }

    // MARK: in-cluster

    /// In-cluster config from the pod's environment and service-account mount.
    public static func inCluster(environment: [String: String] = ProcessInfo.processInfo.environment,
                                 serviceAccountDir dir: String = serviceAccountDir) throws -> KubernetesClientConfig {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
              let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty else {
            throw KubernetesConfigError("not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT unset); pass --kubeconfig")
        }
        guard let p = Int(port), (1...65535).contains(p) else {
            throw KubernetesConfigError("KUBERNETES_SERVICE_PORT must be a port number, got '\(port)'")
        }
        let hostPart = host.contains(":") ? "[\(host)]" : host   // IPv6 service IP
        var c = KubernetesClientConfig(server: "https://\(hostPart):\(p)")
        let tokenPath = dir + "/token"
        guard FileManager.default.isReadableFile(atPath: tokenPath) else {
            throw KubernetesConfigError("in-cluster: cannot read the service-account token \(tokenPath)")
        }
        c.tokenFile = tokenPath
        let caPath = dir + "/ca.crt"
        guard FileManager.default.isReadableFile(atPath: caPath) else {
            throw KubernetesConfigError("in-cluster: cannot read the service-account CA \(caPath)")
        }
        c.caFile = caPath
        if let d = FileManager.default.contents(atPath: dir + "/namespace") {
            let ns = String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if !ns.isEmpty { c.namespace = ns }
        }
        return c
    }

    // MARK: kubeconfig

    /// Largest kubeconfig accepted.
    public static let maxKubeconfigBytes = 1 << 20

    /// Reads a kubeconfig file; relative file references resolve against its directory (as kubectl does).
    public static func kubeconfig(path: String) throws -> KubernetesClientConfig {
        let url = URL(fileURLWithPath: path)
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw KubernetesConfigError("kubeconfig \(path): cannot read: \(error.localizedDescription)")
        }
        guard data.count <= maxKubeconfigBytes else {
            throw KubernetesConfigError("kubeconfig \(path): larger than \(maxKubeconfigBytes) bytes")
        }
        do {
            return try kubeconfig(text: String(decoding: data, as: UTF8.self), baseDirectory: url.deletingLastPathComponent().path)
        } catch let e as KubernetesConfigError {
            throw KubernetesConfigError("kubeconfig \(path): \(e.description)")
        }
    }

    /// Parses kubeconfig YAML; uses `current-context`.
    public static func kubeconfig(text: String, baseDirectory: String) throws -> KubernetesClientConfig {
        let root: Any?
        do {
            root = try Yams.load(yaml: text)
        } catch {
            throw KubernetesConfigError("not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
        guard let doc = root as? [String: Any] else { throw KubernetesConfigError("not a kubeconfig (expected a mapping)") }
        guard let current = doc["current-context"] as? String, !current.isEmpty else {
            throw KubernetesConfigError("current-context is not set")
        }
        let context = try namedEntry(doc, list: "contexts", name: current, body: "context")
        guard let clusterName = context["cluster"] as? String else {
            throw KubernetesConfigError("context \(current): cluster is not set")
        }
        let cluster = try namedEntry(doc, list: "clusters", name: clusterName, body: "cluster")
        guard let server = cluster["server"] as? String, !server.isEmpty else {
            throw KubernetesConfigError("cluster \(clusterName): server is not set")
        }
        let lower = server.lowercased()
        guard lower.hasPrefix("https://") || lower.hasPrefix("http://") else {
            throw KubernetesConfigError("cluster \(clusterName): server must be an http(s) URL, got '\(server)'")
        }
        var c = KubernetesClientConfig(server: server.hasSuffix("/") ? String(server.dropLast()) : server)
        func path(_ p: String) -> String { p.hasPrefix("/") ? p : baseDirectory + "/" + p }
        func base64(_ v: Any?, _ field: String, _ owner: String) throws -> [UInt8]? {
            guard let s = v as? String else { return nil }
            guard let d = Data(base64Encoded: s, options: .ignoreUnknownCharacters), !d.isEmpty else {
                throw KubernetesConfigError("\(owner): \(field) is not valid base64")
            }
            return Array(d)
        }
        func file(_ v: Any?, _ field: String, _ owner: String) throws -> String? {
            guard let s = v as? String, !s.isEmpty else { return nil }
            let p = path(s)
            guard FileManager.default.isReadableFile(atPath: p) else {
                throw KubernetesConfigError("\(owner): \(field) \(p) is not readable")
            }
            return p
        }
        let clusterOwner = "cluster \(clusterName)"
        c.caData = try base64(cluster["certificate-authority-data"], "certificate-authority-data", clusterOwner)
        if c.caData == nil { c.caFile = try file(cluster["certificate-authority"], "certificate-authority", clusterOwner) }
        c.insecureSkipTLSVerify = try bool(cluster["insecure-skip-tls-verify"], "insecure-skip-tls-verify", clusterOwner)
        if let ns = context["namespace"] as? String, !ns.isEmpty { c.namespace = ns }

        if let userName = context["user"] as? String, !userName.isEmpty {
            let owner = "user \(userName)"
            let user = try namedEntry(doc, list: "users", name: userName, body: "user")
            if user["exec"] != nil || user["auth-provider"] != nil {
                throw KubernetesConfigError("\(owner): exec and auth-provider credentials are not supported; use a token or client certificate")
            }
            if user["username"] != nil || user["password"] != nil {
                throw KubernetesConfigError("\(owner): basic authentication is not supported; use a token or client certificate")
            }
            if let t = user["token"] as? String, !t.isEmpty { c.token = t }
            else { c.tokenFile = try file(user["tokenFile"], "tokenFile", owner) }
            c.clientCertData = try base64(user["client-certificate-data"], "client-certificate-data", owner)
            if c.clientCertData == nil { c.clientCertFile = try file(user["client-certificate"], "client-certificate", owner) }
            c.clientKeyData = try base64(user["client-key-data"], "client-key-data", owner)
            if c.clientKeyData == nil { c.clientKeyFile = try file(user["client-key"], "client-key", owner) }
            let hasCert = c.clientCertData != nil || c.clientCertFile != nil
            let hasKey = c.clientKeyData != nil || c.clientKeyFile != nil
            if hasCert != hasKey {
                throw KubernetesConfigError("\(owner): client-certificate and client-key must be given together")
            }
        }
        return c
    }

    private static func namedEntry(_ doc: [String: Any], list: String, name: String, body: String) throws -> [String: Any] {
        guard let entries = doc[list] as? [Any] else { throw KubernetesConfigError("\(list) is missing") }
        for case let e as [String: Any] in entries where (e["name"] as? String) == name {
            guard let b = e[body] as? [String: Any] else { throw KubernetesConfigError("\(list) entry \(name): \(body) is missing") }
            return b
        }
        throw KubernetesConfigError("\(list): no entry named '\(name)'")
    }

    private static func bool(_ v: Any?, _ field: String, _ owner: String) throws -> Bool {
        switch v {
        case nil: return false
        case let b as Bool: return b
        case let s as String where s == "true" || s == "false": return s == "true"
        default: throw KubernetesConfigError("\(owner): \(field) must be true or false")
        }
    }
}
