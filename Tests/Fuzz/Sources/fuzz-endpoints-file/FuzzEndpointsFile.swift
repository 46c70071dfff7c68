// Endpoints file loader (static discovery, YAML or JSON).
// Invariants: no trap; every failure names a problem; the lenient parse
// returns valid, uniquely named endpoints (IPv4 address, port 1...65535);
// the strict parse fails exactly when the lenient one reports problems and
// otherwise returns the same endpoints.
import EPPPicker
import FuzzSupport

@main enum FuzzMain {
    static func main() { runLibFuzzer(fuzzEndpointsFile) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEndpointsFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: fuzzBytes(data, size), as: UTF8.self)
    let lenient: (endpoints: [EndpointSpec], problems: [EndpointsFileProblem])
    do {
        lenient = try EndpointsFile.parseSkippingInvalid(text: text)
    } catch {
        fuzzCheck(!"\(error)".isEmpty, "empty error")
        if let e = error as? EndpointsFileError { fuzzCheck(!e.problems.isEmpty, "file error without problems") }
        fuzzCheck((try? EndpointsFile.parse(text: text)) == nil, "strict parse accepts what lenient rejects")
        return 0
    }
    var names = Set<String>()
    for e in lenient.endpoints {
        fuzzCheck(names.insert(e.name).inserted, "duplicate endpoint name \(e.name.debugDescription)")
        fuzzCheck((1...65535).contains(e.port), "port \(e.port) out of range")
        fuzzCheck(isIPv4(e.address), "address \(e.address.debugDescription) is not IPv4")
        fuzzCheck(!e.name.isEmpty && !e.namespace.isEmpty, "empty name or namespace")
    }
    for p in lenient.problems { fuzzCheck(!p.description.isEmpty, "problem without text") }
    do {
        let strict = try EndpointsFile.parse(text: text)
        fuzzCheck(lenient.problems.isEmpty, "strict parse ignored \(lenient.problems.count) problems")
        fuzzCheck(strict == lenient.endpoints, "strict and lenient endpoints differ")
    } catch {
        fuzzCheck(!lenient.problems.isEmpty, "strict parse failed without lenient problems: \(error)")
    }
    return 0
}

private func isIPv4(_ s: String) -> Bool {
    let parts = s.split(separator: ".", omittingEmptySubsequences: false)
    return parts.count == 4 && parts.allSatisfy { p in
        !p.isEmpty && p.count <= 3 && p.allSatisfy(\.isASCII) && p.allSatisfy(\.isNumber) && Int(p).map { $0 <= 255 } == true
    }
}
