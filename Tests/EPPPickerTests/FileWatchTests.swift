// FileWatcher (inotify + poll, debounced) and EndpointsReloader against real files in a temp directory.

import EPPEventLoop
import EPPObservability
import Glibc
import Synchronization
import Testing
@testable import EPPPicker

private final class TempDir {
    let path: String
    init() {
        var template = Array("/tmp/epp-filewatch-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: p!)
    }
    deinit { _ = system("rm -rf '\(path)'") }
    func file(_ name: String) -> String { path + "/" + name }
}

/// Writes `text` into `path` in place (truncate + write, same inode).
private func writeInPlace(_ path: String, _ text: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0)
    _ = text.withCString { write(fd, $0, strlen($0)) }
    close(fd)
}

/// Writes a temp file next to `path` and renames it over `path` (new inode).
private func writeAtomically(_ path: String, _ text: String) {
    writeInPlace(path + ".tmp", text)
    precondition(rename(path + ".tmp", path) == 0)
}

private final class Calls: Sendable {
    private let n = Atomic<Int>(0)
    func hit() { n.add(1, ordering: .relaxed) }
    var count: Int { n.load(ordering: .relaxed) }
}

private func withLoop<R>(_ body: (EventLoop) async throws -> R) async rethrows -> R {
    let group = EventLoopGroup(count: 1)
    group.start()
    defer { group.stop(); group.join() }
    return try await body(group.loops[0])
}

private func watcherOptions(poll: Duration = .zero) -> FileWatcher.Options {
    var o = FileWatcher.Options()
    o.debounce = .milliseconds(50)
    o.pollInterval = poll
    return o
}

@Suite(.serialized) struct FileWatchTests {
    @Test func seesInPlaceWrite() async throws {
        let dir = TempDir()
        let path = dir.file("endpoints.yaml")
        writeInPlace(path, "a")
        let calls = Calls()
        try await withLoop { loop in
            let w = FileWatcher(path: path, loop: loop, options: watcherOptions()) { calls.hit() }
            w.start()
            defer { w.stop() }
            try await Task.sleep(for: .milliseconds(50))
            #expect(calls.count == 0, "the initial state is the baseline")
            writeInPlace(path, "bb")
            #expect(await eventuallyTrue(timeout: .seconds(2)) { calls.count == 1 })
            writeInPlace(path, "cc")   // same size: seen through the inotify event itself
            #expect(await eventuallyTrue(timeout: .seconds(2)) { calls.count == 2 })
        }
    }

    @Test func aChangeBeforeTheLoopStartsTheWatchIsNotLost() async throws {
        let dir = TempDir()
        let path = dir.file("config.yaml")
        writeInPlace(path, "a")
        let calls = Calls()
        try await withLoop { loop in
            // The loop is busy when start() is called; the file is replaced before it gets to the watcher.
            let release = Atomic<Bool>(false)
            loop.execute { while !release.load(ordering: .acquiring) { usleep(1000) } }
            let w = FileWatcher(path: path, loop: loop, options: watcherOptions()) { calls.hit() }
            w.start()
            defer { w.stop() }
            writeAtomically(path, "b")
            release.store(true, ordering: .releasing)
            #expect(await eventuallyTrue(timeout: .seconds(2)) { calls.count == 1 }, "the state at start() is the baseline")
        }
    }

    @Test func seesAtomicRename() async throws {
        let dir = TempDir()
        let path = dir.file("config.yaml")
        writeInPlace(path, "a")
        writeInPlace(dir.file("unrelated"), "x")
        let calls = Calls()
        try await withLoop { loop in
            let w = FileWatcher(path: path, loop: loop, options: watcherOptions()) { calls.hit() }
            w.start()
            defer { w.stop() }
            try await Task.sleep(for: .milliseconds(50))
            writeInPlace(dir.file("unrelated"), "yy")   // other files in the directory don't count
            try await Task.sleep(for: .milliseconds(150))
            #expect(calls.count == 0)
            writeAtomically(path, "b")
            #expect(await eventuallyTrue(timeout: .seconds(2)) { calls.count == 1 })
            writeAtomically(path, "c")
            #expect(await eventuallyTrue(timeout: .seconds(2)) { calls.count == 2 })
        }
    }

    @Test func seesDeleteAndCreate() async throws {
        let dir = TempDir()
        let path = dir.file("endpoints.yaml")
        writeInPlace(path, "a")
        let calls = Calls()
        try await withLoop { loop in
            let w = FileWatcher(path: path, loop: loop, options: watcherOptions()) { calls.hit() }
            w.start()
            defer { w.stop() }
            try await Task.sleep(for: .milliseconds(50))
            unlink(path)
            #expect(await eventuallyTrue(timeout: .seconds(2)) { calls.count == 1 })
            writeInPlace(path, "new")
            #expect(await eventuallyTrue(timeout: .seconds(2)) { calls.count == 2 })
        }
    }

    @Test func seesKubernetesStyleSymlinkSwap() async throws {
        // config.yaml -> ..data/config.yaml, ..data -> ..v1; the update renames a new ..data symlink into place.
        let dir = TempDir()
        mkdir(dir.file("..v1"), 0o755)
        mkdir(dir.file("..v2"), 0o755)
        writeInPlace(dir.file("..v1/config.yaml"), "one")
        writeInPlace(dir.file("..v2/config.yaml"), "two")
        symlink("..v1", dir.file("..data"))
        symlink("..data/config.yaml", dir.file("config.yaml"))
        let calls = Calls()
        try await withLoop { loop in
            let w = FileWatcher(path: dir.file("config.yaml"), loop: loop, options: watcherOptions()) { calls.hit() }
            w.start()
            defer { w.stop() }
            try await Task.sleep(for: .milliseconds(50))
            symlink("..v2", dir.file("..data_tmp"))
            rename(dir.file("..data_tmp"), dir.file("..data"))
            #expect(await eventuallyTrue(timeout: .seconds(2)) { calls.count == 1 })
        }
    }

    @Test func debouncesBursts() async throws {
        let dir = TempDir()
        let path = dir.file("endpoints.yaml")
        writeInPlace(path, "a")
        let calls = Calls()
        try await withLoop { loop in
            var o = watcherOptions()
            o.debounce = .milliseconds(150)
            let w = FileWatcher(path: path, loop: loop, options: o) { calls.hit() }
            w.start()
            defer { w.stop() }
            try await Task.sleep(for: .milliseconds(50))
            for i in 0..<5 {
                writeInPlace(path, String(repeating: "x", count: i + 2))
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(await eventuallyTrue(timeout: .seconds(2)) { calls.count >= 1 })
            try await Task.sleep(for: .milliseconds(300))
            #expect(calls.count == 1)
        }
    }

    @Test func pollCatchesChangesWhenTheDirectoryAppearsLater() async throws {
        let dir = TempDir()
        let path = dir.file("sub/endpoints.yaml")   // directory missing at start: no inotify watch possible
        let calls = Calls()
        try await withLoop { loop in
            let w = FileWatcher(path: path, loop: loop, options: watcherOptions(poll: .milliseconds(50))) { calls.hit() }
            w.start()
            defer { w.stop() }
            try await Task.sleep(for: .milliseconds(50))
            mkdir(dir.file("sub"), 0o755)
            writeInPlace(path, "a")
            #expect(await eventuallyTrue(timeout: .seconds(2)) { calls.count >= 1 })
            let before = calls.count
            try await Task.sleep(for: .milliseconds(120))   // watch re-attached by the poll
            writeAtomically(path, "bb")
            #expect(await eventuallyTrue(timeout: .seconds(2)) { calls.count > before })
        }
    }

    @Test func stoppedWatcherIsSilent() async throws {
        let dir = TempDir()
        let path = dir.file("endpoints.yaml")
        writeInPlace(path, "a")
        let calls = Calls()
        try await withLoop { loop in
            let w = FileWatcher(path: path, loop: loop, options: watcherOptions(poll: .milliseconds(20))) { calls.hit() }
            w.start()
            try await Task.sleep(for: .milliseconds(50))
            w.stop()
            try await Task.sleep(for: .milliseconds(20))
            writeAtomically(path, "b")
            try await Task.sleep(for: .milliseconds(200))
            #expect(calls.count == 0)
        }
    }
}

// MARK: EndpointsReloader

private let twoEndpoints = """
endpoints:
- name: a
  address: "10.0.0.1"
  port: "8000"
- name: b
  address: "10.0.0.2"
  port: 8000
  labels:
    llm-d.ai/role: decode
"""

@Suite(.serialized) struct FileWatchReloaderTests {
    @Test func reloadAppliesKeepsAndCounts() throws {
        let dir = TempDir()
        let path = dir.file("endpoints.yaml")
        writeInPlace(path, twoEndpoints)
        let ds = Datastore()
        let registry = MetricsRegistry()
        let applied = Calls()
        let r = EndpointsReloader(path: path, datastore: ds, registry: registry) { _ in applied.hit() }

        #expect(r.reload() == .applied(endpoints: 2, skipped: 0))
        #expect(ds.snapshot().endpoints.map(\.name) == ["a", "b"])
        let a = try #require(ds.snapshot().endpoints.first)
        #expect(r.reload() == .unchanged(endpoints: 2, skipped: 0))
        #expect(ds.snapshot().endpoints.first === a)

        // Garbage: the old set stays.
        writeInPlace(path, "endpoints: [ {name: x, address: \n  :::: not yaml")
        guard case .failed = r.reload() else { Issue.record("expected failure"); return }
        #expect(ds.snapshot().endpoints.map(\.name) == ["a", "b"])
        writeInPlace(path, "just a string")
        guard case .failed = r.reload() else { Issue.record("expected failure"); return }
        // Every entry invalid: treated as a broken file, the old set stays.
        writeInPlace(path, "endpoints:\n- name: x\n  address: nowhere\n  port: 0\n")
        guard case .failed = r.reload() else { Issue.record("expected failure"); return }
        unlink(path)
        guard case .failed = r.reload() else { Issue.record("expected failure"); return }
        #expect(ds.snapshot().endpoints.map(\.name) == ["a", "b"])

        // One invalid entry: skipped, the valid ones applied; `a` keeps its object (and counters).
        writeInPlace(path, twoEndpoints + "\n- name: c\n  address: \"not-an-ip\"\n  port: 1\n- name: d\n  address: \"10.0.0.4\"\n  port: 9\n")
        #expect(r.reload() == .applied(endpoints: 3, skipped: 1))
        #expect(ds.snapshot().endpoints.map(\.name) == ["a", "b", "d"])
        #expect(ds.snapshot().endpoints.first === a)

        // An explicitly empty list empties the pool.
        writeInPlace(path, "endpoints: []\n")
        #expect(r.reload() == .applied(endpoints: 0, skipped: 0))
        #expect(ds.snapshot().isEmpty)

        #expect(applied.count == 3)
        #expect(seriesValue(registry, "epp_endpoints_reload_total{result=\"success\"}") == 2)
        #expect(seriesValue(registry, "epp_endpoints_reload_total{result=\"partial\"}") == 1)
        #expect(seriesValue(registry, "epp_endpoints_reload_total{result=\"unchanged\"}") == 1)
        #expect(seriesValue(registry, "epp_endpoints_reload_total{result=\"error\"}") == 4)
        #expect(seriesValue(registry, "epp_endpoints_reload_skipped_entries_total") == 2)
    }

    @Test func watchReloadsOnChange() async throws {
        let dir = TempDir()
        let path = dir.file("endpoints.yaml")
        writeInPlace(path, twoEndpoints)
        let ds = Datastore()
        ds.replace(with: try EndpointsFile.load(path: path))
        let r = EndpointsReloader(path: path, datastore: ds)
        try await withLoop { loop in
            var o = FileWatcher.Options()
            o.debounce = .milliseconds(30)
            r.watch(on: loop, options: o)
            defer { r.stopWatching() }
            try await Task.sleep(for: .milliseconds(50))
            writeAtomically(path, "endpoints:\n- {name: z, address: \"10.1.1.1\", port: 80}\n")
            #expect(await eventuallyTrue(timeout: .seconds(2)) { ds.snapshot().endpoints.map(\.name) == ["z"] })
            writeInPlace(path, "garbage: [")
            try await Task.sleep(for: .milliseconds(200))
            #expect(ds.snapshot().endpoints.map(\.name) == ["z"])
            writeInPlace(path, twoEndpoints)
            #expect(await eventuallyTrue(timeout: .seconds(2)) { ds.snapshot().endpoints.count == 2 })
        }
    }
}
