import EPPEventLoop
import EPPPicker
import EPPServer
import Glibc
import Testing

/// What a stopped server held deinitialises: its loops (and their read buffers), loop contexts, open
/// connections, scheduler config and metrics. Reference cycles among them would outlive `stop()` and show up
/// in LeakSanitizer's report at `epp`'s exit (RELIABILITY.md "Soak").
@Suite struct ShutdownTests {
    @Test func aStoppedServerWithAnOpenConnectionLeavesNothingAlive() throws {
        weak var server: PickerServer?
        weak var metrics: PickerMetrics?
        weak var config: ConfigHolder?
        let loops = WeakLoops()
        var client: Int32 = -1
        do {
            let datastore = Datastore()
            let strongMetrics = PickerMetrics()
            let strongConfig = ConfigHolder(PickerConfig.defaultConfig(environment: PluginEnvironment()))
            var options = PickerServerOptions()
            options.bindAddress = "127.0.0.1"
            options.grpcPort = 0
            options.grpcHealthPort = 0
            options.metricsPort = 0
            options.secureServing = false
            options.workers = 2
            let strongServer = try PickerServer(options: options, datastore: datastore, metrics: strongMetrics,
                                                config: strongConfig) { loop in
                loops.add(loop)
                let scheduler = FrameworkScheduler(datastore: datastore, config: strongConfig)
                scheduler.eventLoop = loop
                return scheduler
            }
            strongServer.start()
            client = connectLoopback(port: strongServer.grpcPort)
            #expect(client >= 0)
            let deadline = EventLoop.now() + 10_000_000_000
            while strongServer.openConnectionCount() == 0 && EventLoop.now() < deadline { usleep(5_000) }
            #expect(strongServer.openConnectionCount() == 1)
            _ = strongMetrics.registry.render()   // runs the collectors once
            strongServer.stop()                    // without a drain: the connection is still open
            strongMetrics.registry.removeCollectors()
            server = strongServer
            metrics = strongMetrics
            config = strongConfig
        }
        close(client)
        #expect(server == nil)
        #expect(metrics == nil)
        #expect(config == nil)
        #expect(loops.count == 2)
        #expect(loops.alive == 0)
    }
}

/// Loops handed to the scheduler factory, held weakly.
private final class WeakLoops: @unchecked Sendable {
    private final class Ref { weak var loop: EventLoop?; init(_ l: EventLoop) { loop = l } }
    private var refs: [Ref] = []
    func add(_ loop: EventLoop) { refs.append(Ref(loop)) }
    var count: Int { refs.count }
    var alive: Int { refs.filter { $0.loop != nil }.count }
}

private func connectLoopback(port: Int) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return -1 }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if rc != 0 { close(fd); return -1 }
    return fd
}
