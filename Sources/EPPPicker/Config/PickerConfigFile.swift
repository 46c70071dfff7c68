import Foundation
import Yams

/// Loading of an `EndpointPickerConfig` document. This first version checks that the file is a YAML
/// mapping with a supported apiVersion and kind; plugin wiring comes with the scheduling framework.
public enum PickerConfigFile {
    public static let supportedAPIVersions: Set<String> = [
        "inference.networking.x-k8s.io/v1alpha1",
        "llm-d.ai/v1alpha1",
        "llm-d.ai/v1",
    ]

    public struct Document: Sendable {
        public var apiVersion: String
        public var kind: String
    }

    public struct ConfigError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func load(path: String) throws -> Document {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(description: "cannot read \(path)")
        }
        return try parse(text: String(decoding: data, as: UTF8.self))
    }

    public static func parse(text: String) throws -> Document {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch { throw ConfigError(description: "invalid YAML: \(error)") }
        guard let map = node?.mapping else { throw ConfigError(description: "expected a YAML mapping at the top level") }
        guard let kind = map["kind"]?.string else { throw ConfigError(description: "missing 'kind' (EndpointPickerConfig)") }
        guard kind == "EndpointPickerConfig" else { throw ConfigError(description: "unsupported kind '\(kind)' (expected EndpointPickerConfig)") }
        let apiVersion = map["apiVersion"]?.string ?? ""
        guard supportedAPIVersions.contains(apiVersion) else {
            throw ConfigError(description: "unsupported apiVersion '\(apiVersion)'; supported: \(supportedAPIVersions.sorted().joined(separator: ", "))")
        }
        return Document(apiVersion: apiVersion, kind: kind)
    }
}
