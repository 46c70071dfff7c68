import Yams

/// The text and line of a YAML parse error, the same every time for the same input. Yams names duplicated
/// mapping keys at the first of them in sort order, but keys that are themselves mappings or sequences do not
/// sort (its `Node` order is not total for them), so which one it names — and the line it reports — follows a
/// Dictionary's order, which changes from one parse to the next (found by `fuzz-picker-config`: one config text
/// failed at line 14 and then at line 18). For those keys the location is left out; for scalar keys (the
/// ordinary mistake) it is kept, now as the error's line. Yams' own message also embeds the whole document.
enum YAMLErrorText {
    static func describe(_ error: any Error) -> (message: String, line: Int?) {
        if case let YamlError.duplicatedKeysInMapping(duplicates, context) = error {
            let keys = duplicates.sorted().map { "'\($0)'" }.joined(separator: ", ")
            guard !duplicates.contains("<uncovertable>") else { return ("duplicated keys in a mapping: \(keys)", nil) }
            return ("duplicated key(s) in a mapping: \(keys) (line \(context.mark.line))", context.mark.line)
        }
        return ("\(error)", nil)
    }
}
