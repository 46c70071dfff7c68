// Watches one file path for changes: inotify on the parent directory (so an atomic rename over the file, a
// symlink swap such as Kubernetes' `..data` ConfigMap update, an editor's write-new-then-rename, or a
// delete + create are all seen), plus a periodic stat check (inode, size, mtime, ctime) as a safety net for
// file systems without inotify and for a watch lost with its directory. Events are debounced; the handler runs on
// the given event loop's thread.

import CLinux
import EPPEventLoop
import Glibc
import Logging

public final class FileWatcher: EventHandler, @unchecked Sendable {
    public struct Options: Sendable {
        /// Quiet time after the last event before the handler runs (default 100 ms).
        public var debounce: Duration = .milliseconds(100)
        /// Continuous events still fire the handler at least this often (default 10 × debounce).
        public var maxDelay: Duration? = nil
        /// Periodic stat check (default 1 s); `.zero` disables it.
        public var pollInterval: Duration = .seconds(1)

        public init() {}
    }

    /// What the watcher last saw at `path` (stat, following symlinks).
    public struct Fingerprint: Sendable, Equatable {
        public var exists: Bool
        public var device: UInt64 = 0
        public var inode: UInt64 = 0
        public var size: Int64 = 0
        public var mtimeNs: Int64 = 0
        public var ctimeNs: Int64 = 0

        public static func of(path: String) -> Fingerprint {
            var st = stat()
            guard stat(path, &st) == 0 else { return Fingerprint(exists: false) }
            return Fingerprint(exists: true, device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size),
                               mtimeNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec),
                               ctimeNs: Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec))
        }
    }

    public let path: String
    public let loop: EventLoop
    private let directory: String
    private let baseName: [UInt8]
    private let options: Options
    private let logger: Logger
    private let handler: () -> Void
    private let debounceNs: UInt64
    private let maxDelayNs: UInt64
    private let pollNs: UInt64

    // Loop-confined.
    private var inotifyFd: Int32 = -1
    private var watchDescriptor: Int32 = -1
    private var last = Fingerprint(exists: false)
    private var debounceTimer: TimerID? = nil
    private var pollTimer: TimerID? = nil
    private var firstPendingAt: UInt64 = 0
    private var pendingDirect = false
    private var active = false
    private var buffer = [UInt8](repeating: 0, count: 8192)

    /// `handler` runs on `loop`'s thread after a change (never concurrently with itself).
    public init(path: String, loop: EventLoop, options: Options = Options(),
                logger: Logger = Logger(label: "epp.file-watcher"), handler: @escaping () -> Void) {
        self.path = path
        self.loop = loop
        self.options = options
        self.logger = logger
        self.handler = handler
        if let slash = path.lastIndex(of: "/") {
            let dir = String(path[..<slash])
            directory = dir.isEmpty ? "/" : dir
            baseName = Array(path[path.index(after: slash)...].utf8)
        } else {
            directory = "."
            baseName = Array(path.utf8)
        }
        debounceNs = watcherNanoseconds(options.debounce)
        maxDelayNs = options.maxDelay.map(watcherNanoseconds) ?? max(debounceNs * 10, 1_000_000)
        pollNs = watcherNanoseconds(options.pollInterval)
    }

    /// Starts watching (from any thread; takes effect on the loop). `baseline`: the file's state when its
    /// content was read (default: now, on the calling thread) — only changes after it call the handler. Taking
    /// it when the loop gets round to starting would miss a change made in between (a busy machine lost a
    /// config update that way: the watcher took the new file as its baseline).
    public func start(baseline: Fingerprint? = nil) {
        let baseline = baseline ?? Fingerprint.of(path: path)
        loop.execute { [self] in startOnLoop(baseline: baseline) }
    }

    /// Stops watching (from any thread; takes effect on the loop). No handler call starts afterwards.
    public func stop() {
        loop.execute { [self] in stopOnLoop() }
    }

    /// Loop thread only: like `start()` but synchronous.
    public func startOnLoop(baseline: Fingerprint? = nil) {
        guard !active else { return }
        active = true
        last = baseline ?? Fingerprint.of(path: path)
        inotifyFd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        if inotifyFd < 0 {
            logger.warning("inotify unavailable; polling only", metadata: ["path": "\(path)", "errno": "\(shim_errno())"])
        } else {
            loop.register(fd: inotifyFd, events: EPOLLIN.rawValue, handler: self)
            addWatch()
        }
        // Changed since the baseline, before the watch existed: no event will tell.
        if Fingerprint.of(path: path) != last { arm(direct: false) }
        schedulePoll()
    }

    /// Loop thread only: like `stop()` but synchronous.
    public func stopOnLoop() {
        guard active else { return }
        active = false
        if let t = debounceTimer { loop.cancelTimer(t) }
        if let t = pollTimer { loop.cancelTimer(t) }
        debounceTimer = nil
        pollTimer = nil
        if inotifyFd >= 0 {
            loop.deregister(fd: inotifyFd)
            close(inotifyFd)
            inotifyFd = -1
        }
        watchDescriptor = -1
    }

    private func addWatch() {
        guard inotifyFd >= 0, watchDescriptor < 0 else { return }
        let mask = UInt32(IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO
                          | IN_DELETE_SELF | IN_MOVE_SELF)
        watchDescriptor = inotify_add_watch(inotifyFd, directory, mask)
        if watchDescriptor < 0 {
            logger.debug("cannot watch directory yet", metadata: ["directory": "\(directory)", "errno": "\(shim_errno())"])
        }
    }

    // MARK: inotify events

    public func handleEvents(_ events: UInt32) {
        guard active else { return }
        var sawAny = false
        var direct = false
        while true {
            let n = buffer.withUnsafeMutableBytes { read(inotifyFd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            buffer.withUnsafeBytes { raw in
                var off = 0
                while off + 16 <= n {
                    let wd = raw.loadUnaligned(fromByteOffset: off, as: Int32.self)
                    let mask = raw.loadUnaligned(fromByteOffset: off + 4, as: UInt32.self)
                    let len = Int(raw.loadUnaligned(fromByteOffset: off + 12, as: UInt32.self))
                    let nameStart = off + 16
                    off = nameStart + len
                    if mask & UInt32(IN_Q_OVERFLOW) != 0 { sawAny = true; direct = true; continue }
                    if mask & UInt32(IN_IGNORED) != 0 {
                        if wd == watchDescriptor { watchDescriptor = -1 }   // directory gone; re-added by the poll
                        sawAny = true
                        continue
                    }
                    if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF) != 0 { sawAny = true; continue }
                    sawAny = true
                    // The name is NUL-padded to `len`.
                    var nameLen = 0
                    while nameLen < len && raw[nameStart + nameLen] != 0 { nameLen += 1 }
                    if nameLen == baseName.count {
                        var same = true
                        for i in 0..<nameLen where raw[nameStart + i] != baseName[i] { same = false; break }
                        if same { direct = true }
                    }
                }
            }
        }
        if watchDescriptor < 0 { addWatch() }
        // Other names in the directory matter only if they changed what `path` resolves to (symlink swaps);
        // the fingerprint check at the end of the debounce decides.
        if sawAny { arm(direct: direct) }
    }

    // MARK: debounce and poll

    private func arm(direct: Bool) {
        let now = EventLoop.now()
        if debounceTimer == nil { firstPendingAt = now } else { loop.cancelTimer(debounceTimer!) }
        pendingDirect = pendingDirect || direct
        let waited = now &- firstPendingAt
        let delay = waited >= maxDelayNs ? 0 : min(debounceNs, maxDelayNs - waited)
        debounceTimer = loop.schedule(afterNanoseconds: delay) { [weak self] in self?.settle() }
    }

    private func settle() {
        debounceTimer = nil
        guard active else { return }
        let fp = Fingerprint.of(path: path)
        let changed = fp != last || pendingDirect
        pendingDirect = false
        last = fp
        if changed {
            logger.debug("file changed", metadata: ["path": "\(path)", "exists": "\(fp.exists)"])
            handler()
        }
    }

    private func schedulePoll() {
        guard pollNs > 0, active else { return }
        pollTimer = loop.schedule(afterNanoseconds: pollNs) { [weak self] in
            guard let self, self.active else { return }
            if self.watchDescriptor < 0 { self.addWatch() }
            if self.debounceTimer == nil && Fingerprint.of(path: self.path) != self.last { self.arm(direct: false) }
            self.schedulePoll()
        }
    }
}

private func watcherNanoseconds(_ d: Duration) -> UInt64 {
    let (s, atto) = d.components
    if s < 0 { return 0 }
    return UInt64(s) &* 1_000_000_000 &+ UInt64(atto / 1_000_000_000)
}
