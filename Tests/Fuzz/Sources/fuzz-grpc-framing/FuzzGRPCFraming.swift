// gRPC Length-Prefixed-Message reassembly (GRPCMessageDeframer) across
// arbitrary DATA splits. Input: byte 0-1 = max message size, byte 2 = number
// of split choices, the choices (chunk lengths), then the stream bytes.
// Invariant: the messages delivered, and the error (code and position), are
// exactly those of a straightforward whole-buffer parse, however the bytes
// are split; a clean end leaves a partial message iff bytes are left over.
import EPPGRPC
import FuzzSupport

@main enum FuzzMain {
    static func main() { runLibFuzzer(fuzzGRPCFraming) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGRPCFraming(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var r = FuzzReader(fuzzBytes(data, size))
    let maxMessageSize = r.uint16() % 2048
    let choices = r.take(Int(r.byte() % 32))
    let stream = r.rest()

    let expected = referenceParse(stream, maxMessageSize: maxMessageSize)
    var deframer = GRPCMessageDeframer(maxMessageSize: maxMessageSize)
    var messages: [[UInt8]] = []
    var error: GRPCStatusCode?
    for chunk in fuzzSplit(stream, choices: choices) {
        let status = chunk.withUnsafeBytes { buf in
            deframer.feed(buf) { msg in
                messages.append(Array(msg))
                return true
            }
        }
        if let status {
            fuzzCheck(!status.message.isEmpty, "error status without message")
            error = status.code
            break   // the stream fails here; the server feeds nothing more
        }
    }
    fuzzCheck(messages == expected.messages,
              "messages differ: got \(messages.map(\.count)) expected \(expected.messages.map(\.count))")
    fuzzCheck(error == expected.error, "error \(String(describing: error)) expected \(String(describing: expected.error))")
    if error == nil {
        fuzzCheck(deframer.hasPartialMessage == expected.leftover, "partial-message flag \(deframer.hasPartialMessage)")
    }
    return 0
}

/// Whole-buffer parse: header checks as soon as 5 header bytes are there.
private func referenceParse(_ b: [UInt8], maxMessageSize: Int) -> (messages: [[UInt8]], error: GRPCStatusCode?, leftover: Bool) {
    var out: [[UInt8]] = []
    var i = 0
    while b.count - i >= 5 {
        let length = Int(b[i + 1]) << 24 | Int(b[i + 2]) << 16 | Int(b[i + 3]) << 8 | Int(b[i + 4])
        if b[i] != 0 { return (out, .unimplemented, true) }
        if length > maxMessageSize { return (out, .resourceExhausted, true) }
        guard b.count - i - 5 >= length else { break }
        out.append(Array(b[(i + 5)..<(i + 5 + length)]))
        i += 5 + length
    }
    return (out, nil, i < b.count)
}
