import EPPLock
import Glibc
import Synchronization

/// Uncontended `withLock` cost: the same loops over Synchronization.Mutex and over Lock (which adds two calls
/// into CSanitizerHooks, empty outside TSan builds). Best of 7 rounds, nanoseconds per `withLock`.
final class Subjects: @unchecked Sendable {
    let mutexCounter = Mutex<Int>(0)
    let lockCounter = Lock<Int>(0)
    let mutexMap = Mutex<[UInt64: Int]>([:])
    let lockMap = Lock<[UInt64: Int]>([:])
}

func nowNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

@inline(never) func mutexCounter(_ s: Subjects, _ n: Int) { for _ in 0..<n { s.mutexCounter.withLock { $0 &+= 1 } } }
@inline(never) func lockCounter(_ s: Subjects, _ n: Int) { for _ in 0..<n { s.lockCounter.withLock { $0 &+= 1 } } }
@inline(never) func mutexMap(_ s: Subjects, _ n: Int) {
    for i in 0..<n { s.mutexMap.withLock { $0[UInt64(i & 1023), default: 0] &+= 1 } }
}
@inline(never) func lockMap(_ s: Subjects, _ n: Int) {
    for i in 0..<n { s.lockMap.withLock { $0[UInt64(i & 1023), default: 0] &+= 1 } }
}

let subjects = Subjects()
let n = 10_000_000
let cases: [(name: String, run: (Subjects, Int) -> Void)] = [
    ("Mutex<Int> += 1", mutexCounter), ("Lock<Int> += 1", lockCounter),
    ("Mutex<[UInt64: Int]> update", mutexMap), ("Lock<[UInt64: Int]> update", lockMap),
]
var best = [String: Double]()
for _ in 0..<7 {
    for c in cases {   // interleaved, so machine noise hits both kinds alike
        let t0 = nowNanos()
        c.run(subjects, n)
        best[c.name] = min(best[c.name] ?? .infinity, Double(nowNanos() - t0) / Double(n))
    }
}
for c in cases {
    let padded = c.name + String(repeating: " ", count: max(0, 30 - c.name.count))
    print("\(padded) \((best[c.name]! * 100).rounded() / 100) ns per withLock (best of 7 × \(n))")
}
let same = subjects.mutexCounter.withLock { $0 } == subjects.lockCounter.withLock { $0 }
exit(same ? 0 : 1)
