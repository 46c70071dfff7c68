// Usage CEL-subset expressions (request-attribute-reporter config).
// Input: byte 0 = length of the expression text, then the expression, then
// the `usage` JSON it is evaluated against.
// Invariants: parsing and evaluation never trap; errors carry a message;
// evaluation is deterministic.
import EPPPicker
import FuzzSupport

@main enum FuzzMain {
    static func main() { runLibFuzzer(fuzzUsageExpression) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzUsageExpression(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var r = FuzzReader(fuzzBytes(data, size))
    let sourceLength = Int(r.byte())
    let source = String(decoding: r.take(sourceLength == 255 ? r.remaining : sourceLength), as: UTF8.self)
    let usage = r.rest()
    let expression: UsageExpression
    do {
        expression = try UsageExpression(source)
    } catch {
        fuzzCheck(!error.description.isEmpty, "empty parse error")
        return 0
    }
    let first = evaluate(expression, usage)
    let second = evaluate(expression, usage)
    fuzzCheck(sameOutcome(first, second), "evaluation is not deterministic: \(first) vs \(second)")
    if case .failure(let e) = first { fuzzCheck(!e.description.isEmpty, "empty evaluation error") }
    return 0
}

private func evaluate(_ e: UsageExpression, _ usage: [UInt8]) -> Result<UsageValue, UsageExpressionError> {
    do { return .success(try e.evaluate(usage: usage)) } catch { return .failure(error) }
}

/// Equality that treats NaN results as equal to each other.
private func sameOutcome(_ a: Result<UsageValue, UsageExpressionError>, _ b: Result<UsageValue, UsageExpressionError>) -> Bool {
    if case .success(.double(let x)) = a, case .success(.double(let y)) = b, x.isNaN, y.isNaN { return true }
    return a == b
}
