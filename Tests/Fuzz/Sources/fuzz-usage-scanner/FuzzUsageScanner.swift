// Response usage scanner (SSE and JSON modes) fed the same bytes whole and
// split at fuzz-chosen points. Input: byte 0 bit 0 = mode, byte 1 = number of
// split choices, then the choices (chunk lengths), then the body.
// Invariants: same usage whichever way the body is split; SSE agrees with the
// one-shot parseSSE. (Negative counts pass through on purpose, like Go.)
import EPPPicker
import FuzzSupport

@main enum FuzzMain {
    static func main() { runLibFuzzer(fuzzUsageScanner) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzUsageScanner(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var r = FuzzReader(fuzzBytes(data, size))
    let mode: UsageScanner.Mode = r.bool() ? .sse : .json
    let choices = r.take(Int(r.byte() % 16))
    // A small line cap half the time so the dropped-line path is exercised too.
    let maxLine = r.bool() ? 64 : 1 << 20
    let body = r.rest()

    var whole = UsageScanner(mode: mode, maxLineBytes: maxLine)
    whole.feed(body)
    let wholeUsage = whole.finish()

    let chunks = fuzzSplit(body, choices: choices)
    // SSE retries a chunk that starts with `data:` after an unterminated line
    // as a line of its own (golden behaviour 12), so such splits may differ
    // from the whole body by design; compare only the other splits.
    if mode == .sse && chunks.dropFirst().contains(where: { $0.starts(with: Array("data:".utf8)) }) { return 0 }
    var split = UsageScanner(mode: mode, maxLineBytes: maxLine)
    for chunk in chunks { split.feed(chunk) }
    let splitUsage = split.finish()
    fuzzCheck(wholeUsage == splitUsage,
              "\(mode) usage whole \(String(describing: wholeUsage)) != split \(String(describing: splitUsage))")
    fuzzCheck(whole.droppedLines == split.droppedLines, "dropped lines \(whole.droppedLines) vs \(split.droppedLines)")

    if mode == .sse && maxLine == 1 << 20 {
        let oneShot = UsageScanner.parseSSE(body)
        fuzzCheck(oneShot == wholeUsage, "parseSSE \(String(describing: oneShot)) != scanner")
    }
    if mode == .json { _ = UsageScanner.parseJSON(body) }
    return 0
}
