import Glibc

/// N event loops, one thread each. Loop i is owned by thread i; objects created on a loop stay on it.
public final class EventLoopGroup: @unchecked Sendable {
    public let loops: [EventLoop]
    private var threads: [pthread_t] = []

    public init(count: Int) {
        precondition(count >= 1)
        loops = (0..<count).map { EventLoop(index: $0) }
    }

    /// Starts one thread per loop. Each loop runs until `stop()`.
    public func start() {
        for loop in loops {
            var tid = pthread_t()
            let box = Unmanaged.passRetained(loop).toOpaque()
            let rc = pthread_create(&tid, nil, { arg in
                let loop = Unmanaged<EventLoop>.fromOpaque(arg!).takeRetainedValue()
                loop.run()
                return nil
            }, box)
            precondition(rc == 0, "pthread_create failed")
            threads.append(tid)
        }
    }

    public func stop() { for l in loops { l.stop() } }

    public func join() {
        for t in threads { pthread_join(t, nil) }
        threads.removeAll()
    }

    /// Number of online CPUs, the default worker count.
    public static var coreCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}
