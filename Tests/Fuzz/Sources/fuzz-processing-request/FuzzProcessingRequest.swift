// ProcessingRequest (Envoy -> us) and HealthCheckRequest protobuf decoding.
// Invariants: decoding never traps; whatever decodes re-encodes to bytes that
// decode to the same request (field by field, body bytes included), and that
// encoding is a fixed point (encode(decode(encode(x))) == encode(x)).
import EPPProtobuf
import FuzzSupport

@main enum FuzzMain {
    static func main() { runLibFuzzer(fuzzProcessingRequest) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProcessingRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = fuzzBytes(data, size)
    checkHealthRequest(input)
    guard let first = try? ProcessingRequest.decode(input) else { return 0 }
    let body1 = Array(input[first.body])
    let encoded1 = first.encoded(body: body1)
    let second: ProcessingRequest
    do {
        second = try ProcessingRequest.decode(encoded1)
    } catch {
        fuzzCheck(false, "re-encoded request does not decode: \(error)")
        return 0
    }
    let body2 = Array(encoded1[second.body])
    fuzzCheck(second.phase == first.phase, "phase \(first.phase) -> \(second.phase)")
    fuzzCheck(second.headers == first.headers, "headers \(first.headers) -> \(second.headers)")
    fuzzCheck(second.endOfStream == first.endOfStream, "end_of_stream changed")
    fuzzCheck(body2 == body1, "body changed: \(body1.count) -> \(body2.count) bytes")
    fuzzCheck(second.observabilityMode == first.observabilityMode, "observability_mode changed")
    fuzzCheck(second.protocolConfig == first.protocolConfig,
              "protocol_config \(String(describing: first.protocolConfig)) -> \(String(describing: second.protocolConfig))")
    fuzzCheck(sameMap(first.metadataContext, second.metadataContext), "metadata_context changed")
    fuzzCheck(sameMap(first.attributes, second.attributes), "attributes changed")
    let encoded2 = second.encoded(body: body2)
    fuzzCheck(encoded2 == encoded1, "encoding is not a fixed point (\(encoded1.count) vs \(encoded2.count) bytes)")
    return 0
}

/// Struct maps compared through their encoding: NaN numbers compare unequal
/// with ==, but a lossless round trip must keep their bits.
private func sameMap(_ a: [(String, ProtoStruct)], _ b: [(String, ProtoStruct)]) -> Bool {
    guard a.count == b.count else { return false }
    for (x, y) in zip(a, b) where x.0 != y.0 || x.1.encoded() != y.1.encoded() { return false }
    return true
}

/// grpc.health.v1.HealthCheckRequest: the service name survives a round trip.
private func checkHealthRequest(_ input: [UInt8]) {
    guard let service = try? HealthCheckRequest.decode(input) else { return }
    var w = WireWriter()
    HealthCheckRequest.encode(service: service, into: &w)
    let again = try? HealthCheckRequest.decode(w.bytes)
    fuzzCheck(again == service, "health service \(service.debugDescription) -> \(String(describing: again))")
}
