@testable import EPPRedis
import Testing

@Suite struct RedisURLTests {
    @Test func tcpForms() throws {
        #expect(try RedisURL(parsing: "redis://127.0.0.1:6380") == RedisURL(endpoint: .tcp(host: "127.0.0.1", port: 6380)))
        #expect(try RedisURL(parsing: "redis://redis.svc") == RedisURL(endpoint: .tcp(host: "redis.svc", port: 6379)))
        #expect(try RedisURL(parsing: "redis://:s3cret@h:1/2")
            == RedisURL(endpoint: .tcp(host: "h", port: 1), username: nil, password: "s3cret", database: 2))
        #expect(try RedisURL(parsing: "redis://alice:p%40ss@h:7/15")
            == RedisURL(endpoint: .tcp(host: "h", port: 7), username: "alice", password: "p@ss", database: 15))
        #expect(try RedisURL(parsing: "redis://[::1]:6379/0") == RedisURL(endpoint: .tcp(host: "::1", port: 6379)))
        #expect(try RedisURL(parsing: "redis://h:6379/") == RedisURL(endpoint: .tcp(host: "h", port: 6379)))
    }

    @Test func unixForms() throws {
        #expect(try RedisURL(parsing: "unix:///run/redis.sock") == RedisURL(endpoint: .unix(path: "/run/redis.sock")))
        #expect(try RedisURL(parsing: "unix:///run/redis.sock?db=3&password=pw")
            == RedisURL(endpoint: .unix(path: "/run/redis.sock"), password: "pw", database: 3))
        #expect(try RedisURL(parsing: "unix:///s?user=u&password=pw")
            == RedisURL(endpoint: .unix(path: "/s"), username: "u", password: "pw"))
    }

    @Test(arguments: [
        ("http://h:1", "expected redis://"),
        ("rediss://h:1", "TLS"),
        ("redis://", "missing host"),
        ("redis://h:0", "port"),
        ("redis://h:70000", "port"),
        ("redis://h:abc", "port"),
        ("redis://h:1/x", "database"),
        ("redis://h:1/-1", "database"),
        ("redis://pw@h:1", "userinfo"),
        ("redis://:@h:1", "empty password"),
        ("unix://relative", "absolute"),
        ("unix:///s?db=x", "db"),
        ("unix:///s?foo=1", "unknown query parameter"),
        ("unix:///s?user=u", "without password"),
    ])
    func errors(input: String, fragment: String) {
        do {
            _ = try RedisURL(parsing: input)
            Issue.record("'\(input)' parsed")
        } catch {
            #expect(error.message.contains(fragment), "\(error.message)")
        }
    }

    @Test func passwordsAreRedacted() {
        do { _ = try RedisURL(parsing: "redis://u:topsecret@h:0"); Issue.record("parsed") } catch {
            #expect(!error.message.contains("topsecret"), "\(error.message)")
        }
        let u = RedisURL(endpoint: .tcp(host: "h", port: 1), username: "u", password: "topsecret", database: 2)
        #expect(u.description == "redis://u:***@h:1/2")
        #expect(RedisURL(endpoint: .unix(path: "/s"), password: "x", database: 1).description == "unix:///s?db=1&password=***")
    }
}

@Suite struct EncodingTests {
    @Test func respEncoding() {
        #expect(RESPEncoder.command(["PING"]) == Array("*1\r\n$4\r\nPING\r\n".utf8))
        var e = RESPEncoder()
        e.beginCommand(argumentCount: 4)
        e.append(argument: "SET")
        e.append(argument: [0, 13, 10, 255])
        e.append(argument: Int64(-1234567890123))
        e.append(argument: 0)
        #expect(e.bytes == Array("*4\r\n$3\r\nSET\r\n$4\r\n".utf8) + [0, 13, 10, 255]
            + Array("\r\n$14\r\n-1234567890123\r\n$1\r\n0\r\n".utf8))
        e.reset()
        e.append(argument: Int64.min)
        #expect(e.bytes == Array("$20\r\n-9223372036854775808\r\n".utf8))
        e.reset()
        e.encode(command: [[UInt8]]())
        #expect(e.bytes == Array("*0\r\n".utf8))
    }

    @Test func sha1Vectors() {
        #expect(SHA1.hex([]) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(SHA1.hex(Array("abc".utf8)) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(SHA1.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        #expect(SHA1.hex([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
        // 55/56/64-byte boundaries (padding edge cases)
        #expect(SHA1.hex([UInt8](repeating: 0x61, count: 55)) == "c1c8bbdc22796e28c0e15163d20899b65621d65a")
        #expect(SHA1.hex([UInt8](repeating: 0x61, count: 56)) == "c2db330f6083854c99d4b5bfb6e8f29f201be699")
        #expect(SHA1.hex([UInt8](repeating: 0x61, count: 64)) == "0098ba824b5c16427bd7a1122a5a442a25ec644d")
        #expect(RedisScript("return 1").sha1 == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
    }

    @Test func ring() {
        var r = Ring<Int>()
        for i in 0..<100 { r.append(i) }
        for i in 0..<50 { #expect(r.removeFirst() == i) }
        for i in 100..<140 { r.append(i) }
        #expect(r.count == 90)
        #expect(r.first == 50 && r.last == 139)
        #expect(r.removeLast() == 139)
        #expect(r.drain() == Array(50..<139))
        #expect(r.isEmpty)
    }
}
