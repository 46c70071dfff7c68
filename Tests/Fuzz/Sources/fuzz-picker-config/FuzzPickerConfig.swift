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
        let lines = text.utf8.reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
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
