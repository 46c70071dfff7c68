// EndpointPickerConfig loader (YAML -> plugins, profiles, scheduler).
// Invariants: any text either loads or fails with a non-empty message whose
// line (when given) lies inside the text; the outcome is deterministic.
import EPPPicker
import FuzzSupport

@main enum FuzzMain {
    static func main() { runLibFuzzer(fuzzPickerConfig) }
}

// One environment for all runs: plugin construction must not depend on a
// fresh one, and a per-run environment would dominate the run time.
nonisolated(unsafe) private let environment = PluginEnvironment()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPickerConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: fuzzBytes(data, size), as: UTF8.self)
    let first = outcome(text)
    let second = outcome(text)
    fuzzCheck(second == first, "config outcome is not deterministic: \(first) then \(second)")
    if case .failure(let e) = first {
        fuzzCheck(!e.message.isEmpty, "empty config error message")
        let lines = yamlLineCount(text)
        if let line = e.line { fuzzCheck(line >= 1 && line <= lines + 1, "error line \(line) outside \(lines) lines: \(e)") }
    }
    return 0
}

private func outcome(_ text: String) -> Result<Int, PickerConfigError> {
    do {
        let config = try PickerConfig.parse(text: text, environment: environment)
        return .success(config.profiles.count)
    } catch {
        return .failure(error)
    }
}

/// Lines as YAML counts them: `\n`, `\r\n` and a lone `\r` each end one (libyaml reports error lines that way;
/// a first long run found "line 8" in a text with 1 `\n` and 7 `\r`).
private func yamlLineCount(_ text: String) -> Int {
    var lines = 1
    var previous: UInt8 = 0
    for b in text.utf8 {
        if b == UInt8(ascii: "\r") || (b == UInt8(ascii: "\n") && previous != UInt8(ascii: "\r")) { lines += 1 }
        previous = b
    }
    return lines
}
