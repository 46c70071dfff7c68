// JSON request-body scanner (ParsedRequest.parse) for every API kind.
// Input: byte 0 picks the APIKind, byte 1 the length of a replacement model
// name taken from the next bytes; the rest is the body.
// Invariants on success: model token inside the body and quoted; the model
// splice changes only that token and re-parses to the new model with the
// same prefix-hash input; prefixHashInput is deterministic and its maxBytes
// form is a prefix of the full one; plainPromptBytes, when non-nil, equals it.
import EPPPicker
import FuzzSupport

@main enum FuzzMain {
    static func main() { runLibFuzzer(fuzzRequestBody) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestBody(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var r = FuzzReader(fuzzBytes(data, size))
    let kinds = APIKind.allCases
    let kind = kinds[Int(r.byte()) % kinds.count]
    let newModel = String(decoding: r.take(Int(r.byte() % 32)), as: UTF8.self)
    let body = r.rest()

    let parsed: ParsedRequest
    switch ParsedRequest.parse(body: body, kind: kind) {
    case .failure(let error):
        fuzzCheck(!error.message.isEmpty && (400..<600).contains(error.httpStatus), "unclear error \(error)")
        return 0
    case .success(let p):
        parsed = p
    }
    fuzzCheck(parsed.kind == kind && parsed.bodyCount == body.count, "kind/bodyCount mismatch")
    let m = parsed.modelRange
    fuzzCheck(m.lowerBound >= 0 && m.upperBound <= body.count && m.count >= 2, "model range \(m) outside body of \(body.count)")
    fuzzCheck(body[m.lowerBound] == UInt8(ascii: "\"") && body[m.upperBound - 1] == UInt8(ascii: "\""),
              "model range \(m) is not a JSON string token")
    for range in [parsed.promptRange, parsed.messagesRange, parsed.inputRange, parsed.itemsRange,
                  parsed.instructionsRange, parsed.toolsRange].compactMap({ $0 }) {
        fuzzCheck(range.lowerBound >= 0 && range.upperBound <= body.count, "field range \(range) outside body")
    }

    let hashInput = parsed.prefixHashInput(body: body)
    fuzzCheck(parsed.prefixHashInput(body: body) == hashInput, "prefixHashInput not deterministic")
    for limit in [1, 7, 64, hashInput.count / 2 + 1] {
        let capped = parsed.prefixHashInput(body: body, maxBytes: limit)
        fuzzCheck(capped == Array(hashInput.prefix(limit)), "maxBytes \(limit) is not a prefix of the full hash input")
    }
    let plain = body.withUnsafeBytes { parsed.plainPromptBytes(body: $0).map { Array($0) } }
    if let plain {
        fuzzCheck(plain == hashInput, "plainPromptBytes differs from prefixHashInput")
    }

    // Model splice (epp-protocol §6.2): only the model token changes.
    let spliced = parsed.bodyWithModel(newModel, body: body)
    fuzzCheck(spliced.prefix(m.lowerBound).elementsEqual(body.prefix(m.lowerBound)), "splice changed bytes before model")
    fuzzCheck(spliced.suffix(body.count - m.upperBound).elementsEqual(body.suffix(body.count - m.upperBound)),
              "splice changed bytes after model")
    switch ParsedRequest.parse(body: spliced, kind: kind) {
    case .failure(let error):
        fuzzCheck(false, "spliced body no longer parses: \(error)")
    case .success(let again):
        fuzzCheck(again.model == newModel, "spliced model \(again.model.debugDescription) != \(newModel.debugDescription)")
        fuzzCheck(again.stream == parsed.stream && again.includeUsage == parsed.includeUsage
                      && again.maxTokens == parsed.maxTokens && again.cacheSalt == parsed.cacheSalt,
                  "splice changed other fields")
        fuzzCheck(again.prefixHashInput(body: spliced) == hashInput, "splice changed the prefix-hash input")
    }
    return 0
}
