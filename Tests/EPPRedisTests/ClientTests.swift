import EPPEventLoop
import EPPObservability
@testable import EPPRedis
import Foundation
import Testing

/// Against real redis-server processes, one event loop on a background thread. Serialized: the timing
/// assertions should not compete with each other for the 2 CPUs.
@Suite(.serialized) struct RedisClientTests {
    @Test func pingSetGetBinaryAndReplyTypes() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let h = LoopHarness()
        defer { h.shutdown() }
        let client = try await h.makeClient(server.url)
        #expect(await h.waitReady(client))

        #expect(try await h.send(client, ["PING"]).get() == .status("PONG"))
        let value: [UInt8] = (0...255).map { UInt8($0) } + Array("\r\n$3\r\n*1\r\n".utf8) + [0, 0]
        let key: [UInt8] = [0x6b, 0, 13, 10, 0xff]
        #expect(try await h.sendBytes(client, [Array("SET".utf8), key, value]).get() == .status("OK"))
        #expect(try await h.sendBytes(client, [Array("GET".utf8), key]).get() == .string(value))
        #expect(try await h.send(client, ["GET", "missing"]).get() == .null)
        #expect(try await h.send(client, ["SET", "empty", ""]).get() == .status("OK"))
        #expect(try await h.send(client, ["GET", "empty"]).get() == .string([]))
        #expect(try await h.send(client, ["INCRBY", "n", "-42"]).get() == .integer(-42))
        #expect(try await h.send(client, ["RPUSH", "l", "a", "b"]).get() == .integer(2))
        #expect(try await h.send(client, ["LRANGE", "l", "0", "-1"]).get() == .array([.string([97]), .string([98])]))
        #expect(try await h.send(client, ["MGET", "l2", "n"]).get() == .array([.null, .string(Array("-42".utf8))]))
        let err = try await h.send(client, ["NOSUCHCOMMAND"]).get()
        #expect(err.isError)
        // prebuilt RESP buffer
        let resp = RESPEncoder.command(["ECHO", "hi"])
        let echoed: Result<RedisReply, RedisClientError> = await withCheckedContinuation { cont in
            h.loop.execute { client.send(resp: resp) { cont.resume(returning: $0) } }
        }
        #expect(try echoed.get() == .string(Array("hi".utf8)))
        await h.close(client)
        #expect(await h.send(client, ["PING"]) == .failure(.unavailable))
    }

    @Test func thousandCommandsInOneIterationLeaveInFewWrites() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let h = LoopHarness()
        defer { h.shutdown() }
        let client = try await h.makeClient(server.url)
        #expect(await h.waitReady(client))
        _ = await h.send(client, ["PING"])
        let before = await h.onLoop { client.stats }

        // 1,000 INCRs issued in one loop iteration; replies must come back in order (FIFO).
        let results: [Int64] = await withCheckedContinuation { cont in
            h.loop.execute {
                var got: [Int64] = []
                got.reserveCapacity(1000)
                for _ in 0..<1000 {
                    client.send(["INCR", "ctr"]) { r in
                        if case let .success(.integer(v)) = r { got.append(v) } else { got.append(-1) }
                        if got.count == 1000 { cont.resume(returning: got) }
                    }
                }
            }
        }
        #expect(results == Array(1...1000))
        let after = await h.onLoop { client.stats }
        let writes = after.writeCalls - before.writeCalls
        #expect(writes >= 1 && writes <= 3, "1000 commands took \(writes) write calls")
        #expect(after.epollModifies - before.epollModifies <= 4, "epoll_ctl MOD calls: \(after.epollModifies - before.epollModifies)")
        #expect(after.commandsSent - before.commandsSent == 1000)

        // sendPipeline: one completion with all replies in order
        let pipe: Result<[RedisReply], RedisClientError> = await withCheckedContinuation { cont in
            h.loop.execute {
                client.sendPipeline([[Array("SET".utf8), [1], [2]], [Array("GET".utf8), [1]], [Array("HKEYS".utf8), Array("none".utf8)]]) {
                    cont.resume(returning: $0)
                }
            }
        }
        #expect(try pipe.get() == [.status("OK"), .string([2]), .array([])])
        await h.close(client)
    }

    @Test func unixSocketWithDatabaseSelect() async throws {
        let server = try RedisServer(unixSocket: true)
        defer { server.stop() }
        let h = LoopHarness()
        defer { h.shutdown() }
        let client = try await h.makeClient(server.url + "?db=3")
        #expect(await h.waitReady(client))
        let info = try await h.send(client, ["CLIENT", "INFO"]).get().text ?? ""
        #expect(info.contains(" db=3 "), "\(info)")
        #expect(try await h.send(client, ["SET", "k", "v3"]).get() == .status("OK"))
        let db0 = try await h.makeClient(server.url)
        #expect(await h.waitReady(db0))
        #expect(try await h.send(db0, ["GET", "k"]).get() == .null)
        await h.close(db0)
        await h.close(client)
    }

    @Test func authAndSelectOverTCP() async throws {
        let server = try RedisServer(extraArgs: ["--requirepass", "s3cr#t"])
        defer { server.stop() }
        let h = LoopHarness()
        defer { h.shutdown() }
        let client = try await h.makeClient("redis://:s3cr%23t@127.0.0.1:\(server.port)/2")
        #expect(await h.waitReady(client))
        #expect(try await h.send(client, ["PING"]).get() == .status("PONG"))
        let info = try await h.send(client, ["CLIENT", "INFO"]).get().text ?? ""
        #expect(info.contains(" db=2 "), "\(info)")
        await h.close(client)

        // AUTH user password (Redis 6+ ACL form) with the default user.
        let acl = try await h.makeClient("redis://default:s3cr%23t@127.0.0.1:\(server.port)")
        #expect(await h.waitReady(acl))
        #expect(try await h.send(acl, ["PING"]).get() == .status("PONG"))
        await h.close(acl)

        // Wrong password: never ready, commands fail fast, the error says why.
        let bad = try await h.makeClient("redis://:wrong@127.0.0.1:\(server.port)")
        #expect(!(await h.waitReady(bad, seconds: 0.5)))
        #expect(await h.send(bad, ["PING"]) == .failure(.unavailable))
        let why = await h.onLoop { bad.lastError ?? "" }
        #expect(why.contains("AUTH failed"), "\(why)")
        await h.close(bad)
    }

    @Test func commandTimeoutFiresOnTimeAndClientReconnects() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let h = LoopHarness()
        defer { h.shutdown() }
        let registry = MetricsRegistry()
        let metrics = RedisClientMetrics(registry: registry)
        let client = try await h.makeClient(server.url, metrics: metrics)
        #expect(await h.waitReady(client))

        struct Outcome: Sendable { var sleep: Result<RedisReply, RedisClientError>; var sleepMs: Double; var behind: Result<RedisReply, RedisClientError> }
        let outcome: Outcome = await withCheckedContinuation { cont in
            h.loop.execute {
                let start = EventLoop.now()
                var sleepResult: (Result<RedisReply, RedisClientError>, Double)?
                client.send(["DEBUG", "SLEEP", "0.3"], timeoutNanos: 50_000_000) { r in
                    sleepResult = (r, Double(EventLoop.now() - start) / 1e6)
                }
                client.send(["PING"], timeoutNanos: 2_000_000_000) { r in
                    cont.resume(returning: Outcome(sleep: sleepResult!.0, sleepMs: sleepResult!.1, behind: r))
                }
            }
        }
        #expect(outcome.sleep == .failure(.timeout))
        #expect(outcome.sleepMs >= 49 && outcome.sleepMs < 150, "timeout fired after \(outcome.sleepMs) ms")
        #expect(outcome.behind == .failure(.disconnected))
        // Reconnects by itself and works again (the server is still sleeping for a while).
        #expect(await h.waitReady(client))
        #expect(try await h.send(client, ["PING"]).get() == .status("PONG"))
        let stats = await h.onLoop { client.stats }
        #expect(stats.timeouts == 1)
        #expect(stats.connects >= 2)
        #expect(metrics.commandsTimeout.current == 1)
        #expect(metrics.timeoutResets.current == 1)
        #expect(metrics.reconnects.current >= 1)
        #expect(metrics.latency.sampleCount >= 1)
        let text = registry.render()
        #expect(text.contains("epp_redis_commands_total{result=\"timeout\"} 1"), "\(text)")
        await h.close(client)
    }

    @Test func connectTimeoutAgainstABlackHole() async throws {
        // A listener that never accepts: TCP connects (backlog) but a handshake (AUTH) never gets an answer.
        let fd = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false, backlog: 1)
        defer { close(fd) }
        let port = Socket.localPort(fd)
        let h = LoopHarness()
        defer { h.shutdown() }
        let client = try await h.makeClient("redis://:pw@127.0.0.1:\(port)") { $0.connectTimeoutNanos = 100_000_000 }
        try await Task.sleep(nanoseconds: 400_000_000)
        let (state, why, attempts) = await h.onLoop { (client.state, client.lastError ?? "", client.stats.reconnectAttempts) }
        #expect(state != .ready)
        #expect(why.contains("timed out"), "\(why)")
        #expect(attempts >= 1)
        await h.close(client)
    }

    @Test func redisKilledFailsFastThenReconnectsAfterRestart() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let h = LoopHarness()
        defer { h.shutdown() }
        let client = try await h.makeClient(server.url)
        #expect(await h.waitReady(client))
        #expect(try await h.send(client, ["SET", "a", "1"]).get() == .status("OK"))

        server.kill()
        #expect(await h.waitState(client) { $0 != .ready })
        // While down: fail fast (well under a millisecond-scale budget), never queue.
        let t0 = Date()
        for _ in 0..<20 { #expect(await h.send(client, ["PING"], timeoutNanos: 2_000_000_000) == .failure(.unavailable)) }
        #expect(Date().timeIntervalSince(t0) < 0.5)
        try await Task.sleep(nanoseconds: 300_000_000)   // a few failed reconnect attempts with backoff
        let attempts = await h.onLoop { client.stats.reconnectAttempts }
        #expect(attempts >= 2)

        try server.start()
        #expect(await h.waitReady(client, seconds: 6), "client did not reconnect by itself")
        #expect(try await h.send(client, ["PING"]).get() == .status("PONG"))
        await h.close(client)
    }

    @Test func evalshaFallsBackToEvalOnNoscript() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let h = LoopHarness()
        defer { h.shutdown() }
        let metrics = RedisClientMetrics(registry: MetricsRegistry())
        let client = try await h.makeClient(server.url, metrics: metrics)
        #expect(await h.waitReady(client))
        let script = RedisScript("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")
        // Our SHA1 equals Redis' own.
        #expect(try await h.send(client, ["SCRIPT", "LOAD", script.source]).get() == .string(Array(script.sha1.utf8)))
        #expect(try await h.send(client, ["SCRIPT", "FLUSH"]).get() == .status("OK"))

        func eval() async -> Result<RedisReply, RedisClientError> {
            await withCheckedContinuation { cont in
                h.loop.execute {
                    client.evalScript(script, keys: [Array("k".utf8)], arguments: [[0, 1]]) { cont.resume(returning: $0) }
                }
            }
        }
        #expect(try await eval().get() == .array([.string([107]), .string([0, 1]), .integer(1)]))
        #expect(metrics.scriptFallbacks.current == 1)
        #expect(try await eval().get() == .array([.string([107]), .string([0, 1]), .integer(2)]))
        #expect(metrics.scriptFallbacks.current == 1, "EVAL must have cached the script")

        // preload: SCRIPT LOADed on (re)connect, so after a flush + reconnect EVALSHA hits directly.
        let other = RedisScript("return 7")
        await h.onLoop { client.preload(other) }
        #expect(try await h.send(client, ["SCRIPT", "EXISTS", other.sha1]).get() == .array([.integer(1)]))
        #expect(try await h.send(client, ["SCRIPT", "FLUSH"]).get() == .status("OK"))
        let connectsBefore = await h.onLoop { client.stats.connects }
        #expect(try await h.send(client, ["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no"]).get() == .integer(1))
        #expect(await h.waitState(client) { _ in client.stats.connects > connectsBefore })
        #expect(await h.waitReady(client))
        let seven: Result<RedisReply, RedisClientError> = await withCheckedContinuation { cont in
            h.loop.execute { client.evalScript(other) { cont.resume(returning: $0) } }
        }
        #expect(try seven.get() == .integer(7))
        #expect(metrics.scriptFallbacks.current == 1)
        await h.close(client)
    }
}
