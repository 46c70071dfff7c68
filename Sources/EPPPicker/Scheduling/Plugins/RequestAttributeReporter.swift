import EPPProtobuf

/// `request-attribute-reporter` — when the model server's response is complete, evaluates CEL
/// expressions over its `usage` object and returns the results to the proxy as dynamic metadata on the
/// last response message (golden behaviour 13), e.g. `envoy.lb / x-gateway-inference-request-cost`.
///
/// Parameters: `attributes` (required, non-empty): each `key: {namespace (default "envoy.lb"), name}`,
/// `expression` (required; must give a number), optional `condition` (must give a bool; false ⇒ not
/// reported). Expressions use the subset of CEL in `UsageExpression` and are parsed at config load (a bad
/// one is a config error naming the line). At run time an expression that fails (absent field without a
/// `has()` guard, division by zero, not a number) is skipped: the response is never held or failed for it.
/// No usage in the response ⇒ nothing is reported.
public final class RequestAttributeReporter: SchedulingPlugin {
    public struct Attribute: Sendable {
        public let namespace: String
        public let name: String
        public let expression: UsageExpression
        public let condition: UsageExpression?
    }

    public let typeName = "request-attribute-reporter"
    public let name: String
    public let attributes: [Attribute]

    public init(name: String = "request-attribute-reporter", params: ConfigReader?) throws(PickerConfigError) {
        self.name = name
        guard let params, let list = try params.sequence("attributes"), !list.isEmpty else {
            throw PickerConfigError(line: params?.line, "\(name): 'attributes' must list at least one attribute")
        }
        var attrs: [Attribute] = []
        for node in list {
            let r = try ConfigReader(node, context: "\(name).attributes[]")
            guard let key = try r.object("key") else { throw PickerConfigError(line: r.line, "\(name): attribute needs a 'key'") }
            let ns = try key.string("namespace") ?? "envoy.lb"
            guard let keyName = try key.string("name"), !keyName.isEmpty, !ns.isEmpty else {
                throw PickerConfigError(line: key.line, "\(name): attribute key needs a non-empty 'name'")
            }
            try key.finish()
            guard let exprText = try r.string("expression") else {
                throw PickerConfigError(line: r.line, "\(name): attribute '\(keyName)' needs an 'expression'")
            }
            let expression: UsageExpression
            do { expression = try UsageExpression(exprText) } catch {
                throw PickerConfigError(line: r.lineOf("expression"), "\(name): expression of '\(keyName)': \(error)")
            }
            var condition: UsageExpression? = nil
            if let condText = try r.string("condition") {
                do { condition = try UsageExpression(condText) } catch {
                    throw PickerConfigError(line: r.lineOf("condition"), "\(name): condition of '\(keyName)': \(error)")
                }
            }
            try r.finish()
            attrs.append(Attribute(namespace: ns, name: keyName, expression: expression, condition: condition))
        }
        try params.finish()
        attributes = attrs
    }

    /// The metadata to report for a completed response, grouped by namespace; nil when nothing applies.
    public func report(_ usage: Usage?) -> ProtoStruct? {
        guard let usage, !usage.json.isEmpty else { return nil }
        var out = ProtoStruct()
        for a in attributes {
            if let cond = a.condition {
                guard case .bool(true)? = try? cond.evaluate(usage: usage.json) else { continue }
            }
            let number: Double
            switch try? a.expression.evaluate(usage: usage.json) {
            case .int(let i)?: number = Double(i)
            case .double(let d)? where d.isFinite: number = d
            default: continue
            }
            RequestAttributeReporter.set(&out, namespace: a.namespace, key: a.name, .number(number))
        }
        return out.fields.isEmpty ? nil : out
    }

    /// Merges `key = value` into namespace `ns` of `metadata`.
    static func set(_ metadata: inout ProtoStruct, namespace ns: String, key: String, _ value: ProtoValue) {
        if let i = metadata.fields.firstIndex(where: { $0.0 == ns }), case .structValue(var inner) = metadata.fields[i].1 {
            inner.fields.removeAll { $0.0 == key }
            inner.fields.append((key, value))
            metadata.fields[i].1 = .structValue(inner)
        } else {
            metadata.fields.append((ns, .structValue(ProtoStruct([(key, value)]))))
        }
    }
}
