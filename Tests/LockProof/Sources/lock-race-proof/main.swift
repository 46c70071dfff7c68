import EPPLock
import Glibc
import Synchronization

/// The shared state: one dictionary behind each kind of lock.
final class Shared: @unchecked Sendable {
    let mutex = Mutex<[Int: Int]>([:])
    let lock = Lock<[Int: Int]>([:])
}

/// One thread's work: 30,000 increments spread over 64 keys, under the chosen lock.
final class Worker: @unchecked Sendable {
    let shared: Shared
    let useLock: Bool
    init(shared: Shared, useLock: Bool) { self.shared = shared; self.useLock = useLock }

    func run() {
        for i in 0..<30_000 {
            if useLock { shared.lock.withLock { $0[i % 64, default: 0] += 1 } }
            else { shared.mutex.withLock { $0[i % 64, default: 0] += 1 } }
        }
    }

    static func spawn(_ worker: Worker) -> pthread_t {
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { arg in
            Unmanaged<Worker>.fromOpaque(arg!).takeUnretainedValue().run()
            return nil
        }, Unmanaged.passUnretained(worker).toOpaque())
        precondition(rc == 0, "pthread_create failed: \(rc)")
        return thread
    }
}

let mode = CommandLine.arguments.dropFirst().first ?? ""
guard mode == "mutex" || mode == "lock" else {
    print("usage: lock-race-proof mutex|lock")
    exit(2)
}
let shared = Shared()
let worker = Worker(shared: shared, useLock: mode == "lock")
let threads = [Worker.spawn(worker), Worker.spawn(worker)]
for t in threads { pthread_join(t, nil) }
let total = mode == "lock" ? shared.lock.withLock { $0.values.reduce(0, +) } : shared.mutex.withLock { $0.values.reduce(0, +) }
print("\(mode): total \(total) (expected 60000)")
exit(total == 60_000 ? 0 : 1)
