@testable import EPPPicker
import EPPProtobuf
import Testing

@Suite struct UsageExpressionTests {
    let usage = Array(#"{"prompt_tokens":7,"completion_tokens":10,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4},"ratio":0.5,"model":"m","flag":true,"nothing":null}"#.utf8)

    func eval(_ e: String) throws -> UsageValue { try UsageExpression(e).evaluate(usage: usage) }

    @Test func arithmeticAndPrecedence() throws {
        #expect(try eval("usage.prompt_tokens + usage.completion_tokens") == .int(17))
        #expect(try eval("usage.prompt_tokens + usage.completion_tokens * 2") == .int(27))
        #expect(try eval("(usage.prompt_tokens + usage.completion_tokens) * 2") == .int(34))
        #expect(try eval("usage.completion_tokens / 3") == .int(3))
        #expect(try eval("usage.completion_tokens % 3") == .int(1))
        #expect(try eval("-usage.prompt_tokens + 1") == .int(-6))
        #expect(try eval("usage.prompt_tokens_details.cached_tokens") == .int(4))
        #expect(try eval("usage.ratio * 4.0") == .double(2))
        #expect(try eval("double(usage.prompt_tokens) * usage.ratio") == .double(3.5))
        #expect(try eval("int(usage.ratio * 5.0)") == .int(2))
    }

    @Test func hasConditionalsAndLogic() throws {
        #expect(try eval("has(usage.prompt_tokens)") == .bool(true))
        #expect(try eval("has(usage.missing)") == .bool(false))
        #expect(try eval("has(usage.prompt_tokens_details.cached_tokens)") == .bool(true))
        #expect(try eval("has(usage.prompt_tokens_details.nope)") == .bool(false))
        #expect(try eval("has(usage.missing) ? usage.missing : 0") == .int(0))
        #expect(try eval("usage.prompt_tokens > 5 && usage.completion_tokens <= 10") == .bool(true))
        #expect(try eval("usage.prompt_tokens >= 8 || !usage.flag") == .bool(false))
        #expect(try eval("usage.model == 'm'") == .bool(true))
        #expect(try eval("usage.model != \"x\"") == .bool(true))
        #expect(try eval("usage.nothing == null") == .bool(true))
        // short circuit: the right side would fail
        #expect(try eval("has(usage.missing) && usage.missing > 1") == .bool(false))
    }

    @Test func runtimeErrors() throws {
        #expect(throws: UsageExpressionError.self) { try eval("usage.missing") }
        #expect(throws: UsageExpressionError.self) { try eval("usage.prompt_tokens / 0") }
        #expect(throws: UsageExpressionError.self) { try eval("usage.prompt_tokens + usage.ratio") }   // CEL: no int + double
        #expect(throws: UsageExpressionError.self) { try eval("usage.model + 1") }
        #expect(throws: UsageExpressionError.self) { try eval("9223372036854775807 + usage.prompt_tokens") }
        #expect(throws: UsageExpressionError.self) { try UsageExpression("usage.x").evaluate(usage: []) }
    }

    @Test func parseErrorsNameTheColumn() {
        for bad in ["", "usage.", "usage.a +", "(usage.a", "foo.bar", "has(1)", "usage.a ? 1", "1 2", "has(usage)"] {
            #expect(throws: UsageExpressionError.self, "\(bad)") { _ = try UsageExpression(bad) }
        }
        do { _ = try UsageExpression("usage.a + $") } catch { #expect(error.description.hasPrefix("column 11")) }
    }

    @Test func deepOrLongExpressionsAreErrorsNotCrashes() throws {
        // fuzz finding: 200k nested parentheses or `!` overflowed the parser's stack
        for deep in [String(repeating: "(", count: 200) + "1" + String(repeating: ")", count: 200),
                     String(repeating: "!", count: 200) + "true", String(repeating: "-", count: 200) + "1"] {
            do {
                _ = try UsageExpression(deep)
                Issue.record("accepted \(deep.prefix(8))…")
            } catch {
                #expect(error.description.contains("nested deeper than"))
            }
        }
        #expect(throws: UsageExpressionError.self) {
            _ = try UsageExpression(Array(repeating: "1", count: 600).joined(separator: "+"))
        }
        // moderate nesting still parses and evaluates
        let ok = String(repeating: "(", count: 30) + "usage.prompt_tokens" + String(repeating: ")", count: 30)
        #expect(try eval(ok) == eval("usage.prompt_tokens"))
    }

    @Test func reporterConfigErrorsNameTheLine() throws {
        let bad = """
            attributes:
            - key: {name: cost}
              expression: "usage.completion_tokens +"
            """
        do {
            _ = try RequestAttributeReporter(name: "r", params: try ConfigReader(yaml: bad, context: "r"))
            Issue.record("accepted a bad expression")
        } catch {
            #expect(error.line == 3)
            #expect(error.description.contains("expression of 'cost'"))
        }
        #expect(throws: PickerConfigError.self) {
            _ = try RequestAttributeReporter(name: "r", params: try ConfigReader(yaml: "attributes: []", context: "r"))
        }
        #expect(throws: PickerConfigError.self) {
            _ = try RequestAttributeReporter(name: "r", params: try ConfigReader(yaml: "attributes:\n- key: {name: c}\n  expression: '1'\n  typo: 1", context: "r"))
        }
    }

    @Test func reporterGroupsByNamespace() throws {
        let r = try RequestAttributeReporter(name: "r", params: try ConfigReader(yaml: """
            attributes:
            - key: {name: a}
              expression: usage.prompt_tokens
            - key: {name: b}
              expression: usage.ratio
            - key: {namespace: other, name: c}
              expression: usage.total_tokens
            - key: {name: skipped}
              expression: usage.model
            """, context: "r"))
        var u = Usage()
        u.json = usage
        let m = try #require(r.report(u))
        #expect(m["envoy.lb"] == .structValue(ProtoStruct([("a", .number(7)), ("b", .number(0.5))])))
        #expect(m["other"] == .structValue(ProtoStruct([("c", .number(17))])))
        #expect(r.report(nil) == nil)
        #expect(r.report(Usage()) == nil)
    }
}
