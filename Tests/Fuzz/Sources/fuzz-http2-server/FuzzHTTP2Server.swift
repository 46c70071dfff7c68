// HTTP/2 input as a whole: raw client bytes into a server HTTP2Connection
// (nghttp2) with the gRPC layer and the ext_proc stream behind it, over a
// socketpair on an event loop driven by hand (no threads, no network).
// Input: byte 0 bit 0 = prepend the client connection preface (so most runs
// get past it), byte 1 = number of split choices, the choices, the bytes.
// Invariants: never traps; the connection always closes its socket.
import CLinux
import EPPEventLoop
import EPPGRPC
import EPPHTTP2
import EPPPicker
import FuzzSupport
import Glibc

@main enum FuzzMain {
    static func main() { runLibFuzzer(fuzzHTTP2Server) }
}

/// The same adapter the server uses (EPPServer.ExtProcCall), rebuilt here
/// because that one is internal to EPPServer.
final class FuzzExtProcCall: GRPCMethodHandler, ExtProcOutput {
    private unowned let call: GRPCCall
    private var stream: ExtProcStream!
    init(call: GRPCCall) {
        self.call = call
        stream = ExtProcStream(output: self, scheduler: scheduler, limits: ExtProcLimits())
    }
    func received(_ call: GRPCCall, message: UnsafeRawBufferPointer) { stream.receive(message) }
    func clientHalfClosed(_ call: GRPCCall) { stream.clientHalfClosed() }
    func callEnded(_ call: GRPCCall, reason: GRPCCall.EndReason) { stream.streamEnded() }
    func send(_ appendFramed: (inout [UInt8]) -> Void) { call.send(appendFramed) }
    func fail(code: Int, message: String) { call.finish(GRPCStatus(GRPCStatusCode(rawValue: code) ?? .unknown, message)) }
    func finishOK() { call.finish(.ok) }
    func chargeBufferedInput(_ n: Int) -> Bool { call.chargeBufferedInput(n) }
    func releaseBufferedInput(_ n: Int) { call.releaseBufferedInput(n) }
}

private let datastore: Datastore = {
    let ds = Datastore()
    ds.replace(with: (0..<2).map { EndpointSpec(name: "pod-\($0)", address: "10.0.0.\($0 + 1)", port: 8000) })
    for e in ds.snapshot().endpoints {
        e.updateMetrics(ScrapedMetrics(metrics: EndpointMetrics(waitingQueueSize: 0, runningRequests: 0, kvCacheUsage: 0.1),
                                       scrapedAt: UInt64.max / 2))
    }
    return ds
}()
nonisolated(unsafe) private let scheduler = FrameworkScheduler(
    datastore: datastore, config: ConfigHolder(PickerConfig.defaultConfig(environment: PluginEnvironment())))
private let loop = EventLoop(index: 0, readBufferSize: 64 * 1024)
nonisolated(unsafe) private let service = GRPCServer(routes: [
    "/envoy.service.ext_proc.v3.ExternalProcessor/Process": { FuzzExtProcCall(call: $0) },
], maxReceiveMessageSize: 1 << 20)

private let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP2Server(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var r = FuzzReader(fuzzBytes(data, size))
    let withPreface = r.bool()
    let choices = r.take(Int(r.byte() % 16))
    let bytes = (withPreface ? preface : []) + r.rest()

    var fds: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0 else {
        fuzzCheck(false, "socketpair failed")
        return 0
    }
    var closed = false
    let conn = HTTP2Connection(loop: loop, fd: fds[0], service: service, settings: HTTP2Settings(), tls: nil) { _ in closed = true }
    var sink = [UInt8](repeating: 0, count: 64 * 1024)
    func drainPeer() { while sink.withUnsafeMutableBytes({ read(fds[1], $0.baseAddress, $0.count) }) > 0 {} }

    loop.runEndOfIteration()   // our preface + SETTINGS go out
    drainPeer()
    for chunk in fuzzSplit(bytes, choices: choices) {
        if conn.isClosed { break }
        let written = chunk.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }
        fuzzCheck(written == chunk.count, "short write to socketpair (\(written) of \(chunk.count))")
        conn.handleEvents(EPOLLIN.rawValue)
        loop.runEndOfIteration()
        drainPeer()
    }
    // Peer hangs up: the connection must notice and close its socket.
    if !conn.isClosed {
        shutdown(fds[1], Int32(SHUT_WR))
        conn.handleEvents(EPOLLIN.rawValue | EPOLLRDHUP.rawValue)
        loop.runEndOfIteration()
    }
    if !conn.isClosed {
        // Level-triggered reads are batched (16 rounds); keep reading until EOF is seen.
        for _ in 0..<64 where !conn.isClosed {
            conn.handleEvents(EPOLLIN.rawValue)
            loop.runEndOfIteration()
        }
    }
    fuzzCheck(conn.isClosed && closed, "connection still open after the peer hung up")
    fuzzCheck(fcntl(fds[0], F_GETFD) == -1, "server socket fd \(fds[0]) leaked")
    close(fds[1])
    return 0
}
