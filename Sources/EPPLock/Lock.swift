import CSanitizerHooks
import Synchronization

/// `Synchronization.Mutex` that ThreadSanitizer can see. Use it instead of `Mutex` everywhere in this package.
///
/// On Linux, `Mutex` waits on a futex inside the uninstrumented Swift runtime, so TSan records no
/// happens-before between one thread's unlock and the next thread's lock and reports races on state that is
/// correctly locked. `withLock` tells TSan about the edge itself: acquire on the mutex's address right after
/// locking, release right before unlocking (`CSanitizerHooks`; those calls are empty functions outside
/// `--sanitize=thread` builds). Same shape as `Mutex.withLock`, so call sites only change the type name.
public struct Lock<Value: ~Copyable>: ~Copyable {
    @usableFromInline let mutex: Mutex<Value>

    @inlinable
    public init(_ initialValue: consuming sending Value) {
        mutex = Mutex(initialValue)
    }

    /// Runs `body` with exclusive access to the value.
    @inlinable
    public borrowing func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        // `mutex` is a `let` of a non-movable (@_rawLayout) type: its address is where it lives and stays
        // the same for every call, which makes it the identity TSan keys the edge on.
        let identity = withUnsafePointer(to: mutex) { UnsafeRawPointer($0) }
        return try mutex.withLock { (value: inout sending Value) throws(E) -> sending Result in
            epp_tsan_acquire(identity)
            defer { epp_tsan_release(identity) }
            return try body(&value)
        }
    }
}

extension Lock: @unchecked Sendable where Value: ~Copyable {}
