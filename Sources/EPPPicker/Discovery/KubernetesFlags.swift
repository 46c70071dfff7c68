// The `epp` flags of Kubernetes discovery (epp-protocol.md §9): validation and the resolution of where the API
// server is, kept out of EPPCommand so the rules are unit-testable.
//
//   --pool-name NAME                        InferencePool (inference.networking.k8s.io/v1) ⇒ selector + targetPorts
//   --endpoint-selector k=v,... --endpoint-target-ports 8000,8001    standalone, no CRD
//   --pool-namespace NS                     default: env NAMESPACE ⇒ kubeconfig context / service-account namespace ⇒ "default"
//   --kubeconfig PATH                       default: in-cluster service account, else env KUBECONFIG

import Foundation

public struct KubernetesDiscoveryFlags: Sendable, Equatable {
    public var poolName: String?
    public var poolNamespace: String?
    public var endpointSelector: String?
    public var endpointTargetPorts: String?
    public var kubeconfig: String?

    public init(poolName: String? = nil, poolNamespace: String? = nil, endpointSelector: String? = nil,
                endpointTargetPorts: String? = nil, kubeconfig: String? = nil) {
        self.poolName = poolName
        self.poolNamespace = poolNamespace
        self.endpointSelector = endpointSelector
        self.endpointTargetPorts = endpointTargetPorts
        self.kubeconfig = kubeconfig
    }

    /// True when any Kubernetes discovery source is asked for.
    public var enabled: Bool { poolName != nil || endpointSelector != nil }

    /// Checks flag combinations (no file or network access). Messages name the flags.
    public func validate(endpointsFile: String?) throws -> KubernetesDiscovery.Source? {
        if endpointsFile != nil && enabled {
            throw KubernetesConfigError("--endpoints-file and Kubernetes discovery (--pool-name / --endpoint-selector) are mutually exclusive")
        }
        if poolName != nil && endpointSelector != nil {
            throw KubernetesConfigError("--pool-name and --endpoint-selector are mutually exclusive")
        }
        if !enabled {
            for (flag, v) in [("--pool-namespace", poolNamespace), ("--endpoint-target-ports", endpointTargetPorts), ("--kubeconfig", kubeconfig)]
            where v != nil {
                throw KubernetesConfigError("\(flag) needs --pool-name or --endpoint-selector")
            }
            return nil
        }
        if let ns = poolNamespace, !Self.isDNSLabel(ns) {
            throw KubernetesConfigError("--pool-namespace '\(ns)' is not a valid namespace name")
        }
        if let k = kubeconfig, k.isEmpty { throw KubernetesConfigError("--kubeconfig must not be empty") }
        if let name = poolName {
            guard Self.isDNSSubdomain(name) else { throw KubernetesConfigError("--pool-name '\(name)' is not a valid object name") }
            if endpointTargetPorts != nil {
                throw KubernetesConfigError("--endpoint-target-ports goes with --endpoint-selector; with --pool-name the InferencePool's spec.targetPorts are used")
            }
            return .inferencePool(name: name)
        }
        let selector: KubernetesLabelSelector
        do {
            selector = try KubernetesLabelSelector.parse(endpointSelector ?? "")
        } catch let e as KubernetesConfigError {
            throw KubernetesConfigError("--endpoint-selector: \(e.description)")
        }
        guard let portsText = endpointTargetPorts else {
            throw KubernetesConfigError("--endpoint-selector needs --endpoint-target-ports (e.g. 8000 or 8000,8001)")
        }
        do {
            return .selector(selector, targetPorts: try parseKubernetesTargetPorts(portsText))
        } catch let e as KubernetesConfigError {
            throw KubernetesConfigError("--endpoint-target-ports: \(e.description)")
        }
    }

    /// Where the API server is: `--kubeconfig`, else in-cluster, else `$KUBECONFIG`.
    public func clientConfig(environment: [String: String] = ProcessInfo.processInfo.environment,
                             serviceAccountDir: String = KubernetesClientConfig.serviceAccountDir) throws -> KubernetesClientConfig {
        if let path = kubeconfig { return try KubernetesClientConfig.kubeconfig(path: path) }
        if environment["KUBERNETES_SERVICE_HOST"] != nil {
            return try KubernetesClientConfig.inCluster(environment: environment, serviceAccountDir: serviceAccountDir)
        }
        if let env = environment["KUBECONFIG"], let first = env.split(separator: ":").first {
            return try KubernetesClientConfig.kubeconfig(path: String(first))
        }
        throw KubernetesConfigError("no Kubernetes API server: not running in a pod (KUBERNETES_SERVICE_HOST unset), no --kubeconfig and no KUBECONFIG")
    }

    /// `--pool-namespace` ⇒ env NAMESPACE ⇒ the config's namespace ⇒ `default`.
    public func namespace(config: KubernetesClientConfig,
                          environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let ns = poolNamespace, !ns.isEmpty { return ns }
        if let ns = environment["NAMESPACE"], !ns.isEmpty { return ns }
        return config.namespace ?? "default"
    }

    /// RFC 1123 label (namespaces).
    static func isDNSLabel(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard !u.isEmpty, u.count <= 63, u.first != UInt8(ascii: "-"), u.last != UInt8(ascii: "-") else { return false }
        return u.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") }
    }

    /// RFC 1123 subdomain (object names).
    static func isDNSSubdomain(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 253 else { return false }
        return s.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { isDNSLabel(String($0)) }
    }
}
