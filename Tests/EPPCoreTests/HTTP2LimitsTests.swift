import CLinux
import EPPEventLoop
import EPPGRPC
import EPPHTTP2
import Glibc
import Synchronization
import Testing

/// The per-connection and per-stream limits of `HTTP2Connection` / `GRPCCall`, driven by hand-made client
/// frames over a socketpair on an event loop run by the test (no threads, no network).
@Suite struct HTTP2LimitsTests {
    /// Records what the gRPC layer did with each call of method `/t/M`.
    final class Recorder: GRPCMethodHandler {
        var messages = 0
        var ended: GRPCCall.EndReason?
        let echo: Bool
        init(echo: Bool) { self.echo = echo }
        func received(_ call: GRPCCall, message: UnsafeRawBufferPointer) {
            messages += 1
            if echo {
                call.send { out in
                    GRPCMessageDeframer.appendHeader(length: message.count, to: &out)
                    out.append(contentsOf: message)
                }
            }
        }
        func clientHalfClosed(_ call: GRPCCall) { call.finish(.ok) }
        func callEnded(_ call: GRPCCall, reason: GRPCCall.EndReason) { ended = reason }
    }

    final class LimitLog: Sendable {
        let hits = Mutex<[GRPCLimit]>([])
    }

    /// One server connection on a socketpair; `client` is the test's end.
    final class Harness {
        let loop = EventLoop(index: 0, readBufferSize: 64 * 1024)
        var recorders: [Recorder] = []
        let limitLog = LimitLog()
        var conn: HTTP2Connection!
        var client: Int32 = -1
        var aborted: HTTP2AbortReason?
        var closed = false
        private var sink = [UInt8](repeating: 0, count: 256 * 1024)

        init(settings: HTTP2Settings, echo: Bool = false, maxMessagesPerStream: Int = .max) {
            var fds: [Int32] = [-1, -1]
            precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
            client = fds[1]
            let log = limitLog
            let service = GRPCServer(routes: ["/t/M": { [weak self] _ in
                let r = Recorder(echo: echo)
                self?.recorders.append(r)
                return r
            }], maxReceiveMessageSize: 1 << 20, maxMessagesPerStream: maxMessagesPerStream,
               onLimitExceeded: { l in log.hits.withLock { $0.append(l) } })
            conn = HTTP2Connection(loop: loop, fd: fds[0], service: service, settings: settings, tls: nil) { [weak self] _ in
                self?.closed = true   // weak: deinit closes the connection too
            }
            conn.onAbort = { [weak self] in self?.aborted = $0 }
            loop.runEndOfIteration()
            drain()
        }

        func drain() { while sink.withUnsafeMutableBytes({ read(client, $0.baseAddress, $0.count) }) > 0 {} }

        /// Writes `bytes` in pieces the socket takes, letting the server read after each; `drainReplies`
        /// false leaves the server's output unread (a client that never reads).
        func send(_ bytes: [UInt8], drainReplies: Bool = true) {
            var offset = 0
            while offset < bytes.count && !conn.isClosed {
                let n = bytes[offset...].withUnsafeBytes { write(client, $0.baseAddress, min($0.count, 32 * 1024)) }
                if n > 0 { offset += n }
                conn.handleEvents(EPOLLIN.rawValue)
                loop.runEndOfIteration()
                if drainReplies { drain() }
            }
        }

        deinit {
            if !conn.isClosed { conn.close() }
            close(client)
        }
    }

    // MARK: client frames

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func frame(_ type: UInt8, _ flags: UInt8, _ stream: Int32, _ payload: [UInt8]) -> [UInt8] {
        let n = payload.count
        return [UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), type, flags,
                UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
    }

    static func settings(_ pairs: [(UInt16, UInt32)] = []) -> [UInt8] {
        var p: [UInt8] = []
        for (id, v) in pairs { p += [UInt8(id >> 8), UInt8(id & 0xFF), UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        return frame(4, 0, 0, p)
    }

    static let settingsAck = frame(4, 1, 0, [])

    static func windowUpdate(_ stream: Int32, _ increment: UInt32) -> [UInt8] {
        frame(8, 0, stream, [UInt8(increment >> 24 & 0x7F), UInt8(increment >> 16 & 0xFF), UInt8(increment >> 8 & 0xFF), UInt8(increment & 0xFF)])
    }

    /// HPACK literal fields without indexing, no Huffman (names and values < 127 bytes).
    static func headers(_ stream: Int32, extra: Int = 0, endStream: Bool = false) -> [UInt8] {
        var fields = [(":method", "POST"), (":scheme", "http"), (":path", "/t/M"), (":authority", "x"),
                      ("content-type", "application/grpc"), ("te", "trailers")]
        for i in 0..<extra { fields.append(("x-extra-\(i)", "v")) }
        var block: [UInt8] = []
        for (n, v) in fields {
            block.append(0)
            block.append(UInt8(n.utf8.count)); block += Array(n.utf8)
            block.append(UInt8(v.utf8.count)); block += Array(v.utf8)
        }
        return frame(1, 0x4 | (endStream ? 0x1 : 0), stream, block)
    }

    static func message(_ stream: Int32, size: Int, endStream: Bool = false) -> [UInt8] {
        var payload: [UInt8] = []
        GRPCMessageDeframer.appendHeader(length: size, to: &payload)
        payload += [UInt8](repeating: 0x61, count: size)
        return frame(0, endStream ? 1 : 0, stream, payload)
    }

    static func reset(_ stream: Int32) -> [UInt8] { frame(3, 0, stream, [0, 0, 0, 8]) }   // CANCEL

    // MARK: tests

    @Test func headerCountOverTheLimitEndsOnlyThatStream() {
        var s = HTTP2Settings()
        s.maxHeaderCount = 10
        let h = Harness(settings: s)
        h.send(Self.preface + Self.settings() + Self.headers(1, extra: 5) + Self.headers(3, extra: 4) + Self.message(3, size: 3))
        #expect(h.limitLog.hits.withLock { $0 } == [.headerList])   // 11 fields on stream 1
        #expect(h.recorders.count == 1 && h.recorders[0].messages == 1)   // stream 3 (10 fields) served
        #expect(!h.conn.isClosed)
    }

    @Test func headerListBytesOverTheLimitEndsTheStream() {
        var s = HTTP2Settings()
        s.maxHeaderListSize = 400   // 6 base fields ≈ 270 bytes with the 32-byte overhead each; +5 extra > 400
        let h = Harness(settings: s)
        h.send(Self.preface + Self.settings() + Self.headers(1, extra: 5) + Self.headers(3))
        #expect(h.limitLog.hits.withLock { $0 } == [.headerList])
        #expect(h.recorders.count == 1)
        #expect(!h.conn.isClosed)
    }

    @Test func rapidResetOfEmptyStreamsEndsTheConnection() {
        var s = HTTP2Settings()
        s.earlyResetBudget = 10
        let h = Harness(settings: s)
        var attack = Self.preface + Self.settings()
        for i in 0..<50 { attack += Self.headers(Int32(2 * i + 1)) + Self.reset(Int32(2 * i + 1)) }
        h.send(attack)
        #expect(h.aborted == .rapidReset)
        #expect(h.conn.isClosed && h.closed)
    }

    @Test func resetsAfterADeliveredMessageAreFree() {
        var s = HTTP2Settings()
        s.earlyResetBudget = 10
        let h = Harness(settings: s)
        var traffic = Self.preface + Self.settings()
        // Envoy's pattern: every ext_proc stream sends its messages, then RST_STREAM.
        for i in 0..<200 { traffic += Self.headers(Int32(2 * i + 1)) + Self.message(Int32(2 * i + 1), size: 20) + Self.reset(Int32(2 * i + 1)) }
        h.send(traffic)
        #expect(h.aborted == nil)
        #expect(!h.conn.isClosed)
        #expect(h.recorders.count == 200 && h.recorders.allSatisfy { $0.messages == 1 })
    }

    @Test func zeroWindowPeerCannotGrowQueuedOutputPastTheCap() {
        var s = HTTP2Settings()
        s.maxQueuedOutputBytes = 256 << 10
        let h = Harness(settings: s, echo: true)
        // INITIAL_WINDOW_SIZE 0: nothing we echo may leave; every message adds 16 KiB to our queue.
        var attack = Self.preface + Self.settings([(4, 0)]) + Self.settingsAck + Self.headers(1)
        for _ in 0..<40 { attack += Self.message(1, size: 16_000) }
        h.send(attack)
        #expect(h.aborted == .outputStalled)
        #expect(h.conn.isClosed)
        #expect(h.recorders[0].messages < 40)
    }

    @Test func peerThatReadsIsNotMistakenForAStall() {
        var s = HTTP2Settings()
        s.maxQueuedOutputBytes = 256 << 10
        let h = Harness(settings: s, echo: true)
        var traffic = Self.preface + Self.settings([(4, 16 << 20)]) + Self.windowUpdate(0, 16 << 20) + Self.settingsAck + Self.headers(1)
        for _ in 0..<40 { traffic += Self.message(1, size: 16_000) }
        h.send(traffic)
        #expect(h.aborted == nil)
        #expect(h.recorders[0].messages == 40)
        #expect(h.conn.queuedOutputBytes < 256 << 10)
    }

    @Test func messagesPerStreamLimitEndsTheCallWithResourceExhausted() {
        let h = Harness(settings: HTTP2Settings(), maxMessagesPerStream: 3)
        var traffic = Self.preface + Self.settings() + Self.headers(1)
        for _ in 0..<5 { traffic += Self.message(1, size: 10) }
        traffic += Self.headers(3) + Self.message(3, size: 10)
        h.send(traffic)
        #expect(h.recorders.count == 2)
        #expect(h.recorders[0].messages == 3)
        #expect(h.recorders[0].ended == .finished(.resourceExhausted))
        #expect(h.recorders[1].messages == 1)   // the next stream on the connection is unaffected
        #expect(h.limitLog.hits.withLock { $0 } == [.messagesPerStream])
        #expect(!h.conn.isClosed)
    }

    /// DATA frames (≤ 15,000 bytes each) carrying `bytes`.
    static func data(_ stream: Int32, _ bytes: [UInt8], endStream: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        var off = 0
        repeat {
            let end = min(off + 15_000, bytes.count)
            out += frame(0, endStream && end == bytes.count ? 1 : 0, stream, Array(bytes[off..<end]))
            off = end
        } while off < bytes.count
        return out
    }

    /// The first `sent` bytes of a `size`-byte gRPC message (prefix included).
    static func partialMessage(size: Int, sent: Int) -> [UInt8] {
        var payload: [UInt8] = []
        GRPCMessageDeframer.appendHeader(length: size, to: &payload)
        return payload + [UInt8](repeating: 0x62, count: sent)
    }

    @Test func bufferedInputBudgetEndsTheStreamThatWouldExceedItAndIsReturned() {
        var s = HTTP2Settings()
        s.maxBufferedInputBytes = 110_000
        let h = Harness(settings: s)
        var traffic = Self.preface + Self.settings() + Self.settingsAck
        // Streams 1, 3, 5 each hold 30,005 bytes of a 50,000-byte message; stream 7 would reach 120,020. (The
        // budget leaves room for stream 1's next 15,000-byte frame: bytes count while a message is incomplete.)
        for sid: Int32 in [1, 3, 5, 7] { traffic += Self.headers(sid) + Self.data(sid, Self.partialMessage(size: 50_000, sent: 30_000)) }
        h.send(traffic)
        #expect(h.recorders.count == 4)
        #expect(h.recorders[3].ended == .finished(.resourceExhausted))
        #expect(h.recorders[0...2].allSatisfy { $0.ended == nil })
        #expect(h.conn.bufferedInputBytes == 3 * 30_005)
        #expect(h.limitLog.hits.withLock { $0 } == [.connectionBufferedBytes])
        // stream 1 completes its message (delivered, released), 3 is reset, 5 ends inside its message
        h.send(Self.data(1, [UInt8](repeating: 0x62, count: 20_000)) + Self.reset(3) + Self.data(5, [0x62], endStream: true))
        #expect(h.recorders[0].messages == 1)
        #expect(h.recorders[2].ended == .finished(.internal))
        #expect(h.conn.bufferedInputBytes == 0)
        // the connection still serves new streams up to the budget
        h.send(Self.headers(9) + Self.data(9, Self.partialMessage(size: 90_000, sent: 90_000)))
        #expect(h.recorders[4].messages == 1)
        #expect(h.conn.bufferedInputBytes == 0)
        #expect(!h.conn.isClosed)
        // many rejected and completed streams later the budget is back at 0
        for i in 0..<20 {
            let a = Int32(11 + 4 * i), b = a + 2
            h.send(Self.headers(a) + Self.data(a, Self.partialMessage(size: 99_000, sent: 60_000))
                   + Self.headers(b) + Self.data(b, Self.partialMessage(size: 99_000, sent: 60_000))   // over: ended
                   + Self.reset(a))
        }
        #expect(h.limitLog.hits.withLock { $0.count } == 21)
        #expect(h.conn.bufferedInputBytes == 0)
    }

    @Test func settingsFloodEndsTheConnection() {
        let h = Harness(settings: HTTP2Settings())
        var attack = Self.preface + Self.settings()
        for _ in 0..<3000 { attack += Self.settings([(3, 100)]) }   // every SETTINGS needs an ACK
        h.send(attack, drainReplies: false)
        #expect(h.conn.isClosed)
        #expect(h.aborted == .protocolError)
    }
}
