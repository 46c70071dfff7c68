import CLinux
import Glibc

public struct SocketError: Error, CustomStringConvertible {
    public let description: String
    public init(_ what: String, errno e: Int32 = shim_errno()) {
        description = "\(what): \(String(cString: strerror(e)))"
    }
}

public enum Socket {
    /// A non-blocking TCP listening socket. `reusePort` lets every loop bind its own socket to the same port.
    public static func listen(host: String, port: Int, reusePort: Bool, backlog: Int32 = 4096) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        if reusePort { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, 4) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &addr.sin_addr) == 1 else {
            close(fd)
            throw SocketError("invalid listen address '\(host)' (IPv4 literal expected)", errno: EINVAL)
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { let e = shim_errno(); close(fd); throw SocketError("bind \(host):\(port)", errno: e) }
        guard Glibc.listen(fd, backlog) == 0 else { let e = shim_errno(); close(fd); throw SocketError("listen", errno: e) }
        return fd
    }

    /// The port a socket is bound to (for port 0 listeners in tests).
    public static func localPort(_ fd: Int32) -> Int {
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    public static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4)
    }

    /// Peer address as `ip:port` (diagnostics only).
    public static func peerName(_ fd: Int32) -> String {
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) }
        }
        guard rc == 0 else { return "?" }
        var buf = [CChar](repeating: 0, count: 32)
        inet_ntop(AF_INET, &addr.sin_addr, &buf, 32)
        return "\(String(cString: buf)):\(UInt16(bigEndian: addr.sin_port))"
    }
}

/// Accepts connections on one loop's listening socket and hands each new fd to `onAccept`.
/// Owned by its loop.
public final class TCPListener: EventHandler {
    public let fd: Int32
    private unowned let loop: EventLoop
    private let onAccept: (Int32) -> Void
    public private(set) var isOpen = true
    /// Called (on the loop) each time accept fails for lack of file descriptors and the listener pauses.
    public var onDescriptorsExhausted: ((Int32) -> Void)?
    /// How long the listener stops watching its socket after EMFILE/ENFILE.
    public var exhaustedBackoffNanos: UInt64 = 100_000_000
    /// Set while paused after EMFILE/ENFILE: the pending connection stays queued, and a level-triggered
    /// EPOLLIN would otherwise wake the loop again at once (100 % CPU until a descriptor frees up).
    private var resumeTimer: TimerID?
    public var isPaused: Bool { resumeTimer != nil }

    public init(loop: EventLoop, fd: Int32, onAccept: @escaping (Int32) -> Void) {
        self.fd = fd
        self.loop = loop
        self.onAccept = onAccept
        loop.register(fd: fd, events: EPOLLIN.rawValue, handler: self)
    }

    public func handleEvents(_ events: UInt32) {
        // Accept a bounded batch per wake-up so one busy listener cannot starve existing connections.
        for _ in 0..<64 {
            let c = accept4(fd, nil, nil, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
            if c < 0 {
                let e = shim_errno()
                if e == EMFILE || e == ENFILE { pauseAfterExhaustion(errno: e) }
                return   // EAGAIN/EINTR: nothing more now; ECONNABORTED etc.: the next event retries
            }
            Socket.setNoDelay(c)
            onAccept(c)
        }
    }

    private func pauseAfterExhaustion(errno e: Int32) {
        guard isOpen, resumeTimer == nil else { return }
        loop.modify(fd: fd, events: 0)
        resumeTimer = loop.schedule(afterNanoseconds: exhaustedBackoffNanos) { [weak self] in
            guard let self else { return }
            self.resumeTimer = nil
            if self.isOpen { self.loop.modify(fd: self.fd, events: EPOLLIN.rawValue) }
        }
        onDescriptorsExhausted?(e)
    }

    /// Stops accepting (drain): the socket is closed so the kernel routes new connections to other replicas.
    public func close() {
        guard isOpen else { return }
        isOpen = false
        if let t = resumeTimer { loop.cancelTimer(t); resumeTimer = nil }
        loop.deregister(fd: fd)
        Glibc.close(fd)
    }
}
