import EPPEventLoop
import EPPGRPC
import Testing

@Suite struct GRPCFramingTests {
    func frame(_ payload: [UInt8], flag: UInt8 = 0) -> [UInt8] {
        var out: [UInt8] = []
        GRPCMessageDeframer.appendHeader(length: payload.count, to: &out)
        out[0] = flag
        return out + payload
    }

    func deliver(_ chunks: [[UInt8]], max: Int = 1 << 20) -> (messages: [[UInt8]], error: GRPCStatus?) {
        var d = GRPCMessageDeframer(maxMessageSize: max)
        var got: [[UInt8]] = []
        for c in chunks {
            if let e = c.withUnsafeBytes({ d.feed($0) { got.append(Array($0)); return true } }) { return (got, e) }
        }
        return (got, nil)
    }

    @Test func severalMessagesInOneChunk() {
        let r = deliver([frame([1, 2, 3]) + frame([]) + frame([4])])
        #expect(r.messages == [[1, 2, 3], [], [4]])
        #expect(r.error == nil)
    }

    @Test func messageSplitAtEveryPosition() {
        let stream = frame(Array(0..<200)) + frame([9, 9])
        for split in 1..<stream.count {
            let r = deliver([Array(stream[..<split]), Array(stream[split...])])
            #expect(r.messages == [Array(0..<200), [9, 9]], "split at \(split)")
        }
    }

    @Test func byteByByte() {
        let stream = frame(Array(repeating: 7, count: 70)) + frame([1])
        let r = deliver(stream.map { [$0] })
        #expect(r.messages == [Array(repeating: 7, count: 70), [1]])
    }

    @Test func compressedFlagIsRefused() {
        let r = deliver([frame([1], flag: 1)])
        #expect(r.error?.code == .unimplemented)
        #expect(r.messages.isEmpty)
    }

    @Test func oversizeIsResourceExhaustedBeforeBuffering() {
        let header = Array(frame(Array(repeating: 0, count: 2000))[..<5])
        let r = deliver([header], max: 1000)
        #expect(r.error?.code == .resourceExhausted)
    }

    @Test func stopsDeliveringWhenAskedTo() {
        var d = GRPCMessageDeframer(maxMessageSize: 1024)
        var n = 0
        let input = frame([1]) + frame([2]) + frame([3])
        _ = input.withUnsafeBytes { d.feed($0) { _ in n += 1; return n < 2 } }
        #expect(n == 2)
    }

    @Test func grpcMessagePercentEncoding() {
        #expect(GRPCStatus.percentEncode("a b%c\nü") == "a b%25c%0A%C3%BC")
        #expect(GRPCStatus.percentDecode(GRPCStatus.percentEncode("spurious: 100% ✓")) == "spurious: 100% ✓")
    }
}

@Suite struct EventLoopTests {
    @Test func timersFireInDeadlineOrderAndCancelWorks() {
        let loop = EventLoop()
        var fired: [Int] = []
        let start = EventLoop.now()   // before scheduling: deadlines count from each schedule call
        loop.schedule(afterNanoseconds: 30_000_000) { fired.append(3); loop.stop() }
        loop.schedule(afterNanoseconds: 10_000_000) { fired.append(1) }
        let cancelled = loop.schedule(afterNanoseconds: 20_000_000) { fired.append(2) }
        loop.cancelTimer(cancelled)
        loop.schedule(afterNanoseconds: 5_000_000) { fired.append(0) }
        loop.run()
        #expect(fired == [0, 1, 3])
        #expect(EventLoop.now() - start >= 30_000_000)
    }

    @Test func executeFromAnotherThreadWakesTheLoop() {
        let group = EventLoopGroup(count: 1)
        let loop = group.loops[0]
        group.start()
        let done = Flag()
        loop.execute { done.set() }
        var waited = 0
        while !done.isSet && waited < 2000 { usleepMs(1); waited += 1 }
        group.stop()
        group.join()
        #expect(done.isSet)
    }
}

final class Flag: @unchecked Sendable {
    private var value = false
    private let lock = NSLockLike()
    func set() { lock.locked { value = true } }
    var isSet: Bool { lock.locked { value } }
}

import Synchronization
final class NSLockLike: Sendable {
    private let m = Mutex<Void>(())
    func locked<T>(_ f: () -> T) -> T { m.withLock { _ in f() } }
}

import Glibc
func usleepMs(_ ms: Int) { usleep(UInt32(ms * 1000)) }
