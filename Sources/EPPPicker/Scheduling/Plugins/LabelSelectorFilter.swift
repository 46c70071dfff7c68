/// `label-selector-filter` (deprecated alias `by-label-selector`) — keeps endpoints matching a Kubernetes
/// label selector: `matchLabels{k: v}` (all must equal) and `matchExpressions[{key, operator, values}]` with
/// operators `In`, `NotIn`, `Exists`, `DoesNotExist` (all must hold). An empty selector matches everything.
/// The older `by-label` type takes `{label, validValues[], allowsNoLabel}` (keeps endpoints whose label value
/// is listed, or that lack the label when `allowsNoLabel`).
public final class LabelSelectorFilter: SchedulingFilter {
    public enum Operator: String, Sendable { case `in` = "In", notIn = "NotIn", exists = "Exists", doesNotExist = "DoesNotExist" }
    public struct Requirement: Sendable {
        public var key: String
        public var op: Operator
        public var values: Set<String>
    }

    public let typeName: String
    public let name: String
    public let matchLabels: [String: String]
    public let requirements: [Requirement]
    /// `by-label` form: label key, valid values, whether missing label passes.
    let byLabel: (label: String, values: Set<String>, allowsNoLabel: Bool)?

    public init(name: String, typeName: String = "label-selector-filter", params: ConfigReader?) throws(PickerConfigError) {
        self.name = name
        self.typeName = typeName
        if typeName == "by-label" {
            guard let params, let label = try params.string("label") else {
                throw PickerConfigError(line: params?.line, "\(name) (by-label): parameter 'label' is required")
            }
            let values = try params.stringList("validValues") ?? []
            let allows = try params.bool("allowsNoLabel", default: false)
            try params.finish()
            byLabel = (label, Set(values), allows)
            matchLabels = [:]
            requirements = []
            return
        }
        byLabel = nil
        matchLabels = try params?.stringMap("matchLabels") ?? [:]
        var reqs: [Requirement] = []
        for n in try params?.sequence("matchExpressions") ?? [] {
            let r = try ConfigReader(n, context: "\(name).matchExpressions[]")
            guard let key = try r.string("key") else { throw PickerConfigError(line: r.line, "\(name): matchExpressions entry needs 'key'") }
            let opText = try r.string("operator") ?? ""
            guard let op = Operator(rawValue: opText) else {
                throw PickerConfigError(line: r.lineOf("operator"), "\(name): unknown operator '\(opText)' (In, NotIn, Exists, DoesNotExist)")
            }
            let values = try r.stringList("values") ?? []
            try r.finish()
            if (op == .in || op == .notIn) && values.isEmpty {
                throw PickerConfigError(line: r.line, "\(name): operator \(op.rawValue) needs values")
            }
            reqs.append(Requirement(key: key, op: op, values: Set(values)))
        }
        requirements = reqs
        try params?.finish()
    }

    public func matches(_ labels: [String: String]) -> Bool {
        if let b = byLabel {
            guard let v = labels[b.label] else { return b.allowsNoLabel }
            return b.values.contains(v)
        }
        for (k, v) in matchLabels where labels[k] != v { return false }
        for r in requirements {
            let v = labels[r.key]
            switch r.op {
            case .in: if v == nil || !r.values.contains(v!) { return false }
            case .notIn: if let v, r.values.contains(v) { return false }
            case .exists: if v == nil { return false }
            case .doesNotExist: if v != nil { return false }
            }
        }
        return true
    }

    public func filter(_ ctx: SchedulingContext, _ candidates: [Int]) -> [Int] {
        candidates.filter { matches(ctx.endpoints[$0].spec.labels) }
    }
}
