import Testing
@testable import EPPPicker

/// Found by `fuzz-picker-config` (its input is a seed in Tests/Fuzz/corpus/picker-config): a config whose YAML
/// repeats keys that are themselves sequences or mappings failed with a different line from one parse to the
/// next (Yams picks "the first" duplicate by an order that is not total for such keys).
struct PickerConfigDeterminismTests {
    static let complexDuplicates = """
    apiVersion: inference.networking.x-k8s.io/v1alpha1
    kind: EndpointPickerConfig
    ? [a]
    : 1
    ? {b: 1}
    : 2
    ? [a]
    : 3
    ? {b: 1}
    : 4
    ? [c, d]
    : 5
    ? [c, d]
    : 6
    """

    @Test func duplicatedComplexKeysFailTheSameWayEveryTime() {
        let env = PluginEnvironment()
        var outcomes: Set<String> = []
        for _ in 0..<50 {
            do { _ = try PickerConfig.parse(text: Self.complexDuplicates, environment: env); outcomes.insert("loaded") }
            catch { outcomes.insert("\(error.line.map(String.init) ?? "-") \(error.message)") }
        }
        #expect(outcomes.count == 1)
        #expect(outcomes.first?.hasPrefix("- invalid YAML: duplicated keys in a mapping") == true)
    }

    @Test func aDuplicatedScalarKeyNamesItsLine() {
        let text = "kind: EndpointPickerConfig\nplugins: []\nkind: EndpointPickerConfig\n"
        #expect(throws: PickerConfigError.self) { _ = try PickerConfig.parse(text: text, environment: PluginEnvironment()) }
        do { _ = try PickerConfig.parse(text: text, environment: PluginEnvironment()) } catch {
            #expect(error.message == "invalid YAML: duplicated key(s) in a mapping: 'kind' (line 1)")
            #expect(error.line == 1)
        }
    }
}
