/// Where and how to connect to Redis, parsed from `--redis-url`.
///
/// Accepted forms:
/// - `redis://[[user]:password@]host[:port][/db]` — port defaults to 6379, db to 0; IPv6 hosts in brackets
///   (`redis://[::1]:6379`). `:password@` ⇒ `AUTH password`; `user:password@` ⇒ `AUTH user password`.
///   Userinfo is percent-decoded.
/// - `unix:///absolute/path[?db=N&password=…&user=…]`
/// `rediss://` (TLS) is rejected: hiredis 0.14.1 has no TLS.
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public var endpoint: Endpoint
    public var username: String?
    public var password: String?
    public var database: Int

    public init(endpoint: Endpoint, username: String? = nil, password: String? = nil, database: Int = 0) {
        self.endpoint = endpoint
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses `string`; throws `RedisURLError` with a one-line message naming the problem.
    public init(parsing string: String) throws(RedisURLError) {
        if string.hasPrefix("redis://") {
            self = try RedisURL.parseTCP(String(string.dropFirst("redis://".count)), original: string)
        } else if string.hasPrefix("unix://") {
            self = try RedisURL.parseUnix(String(string.dropFirst("unix://".count)), original: string)
        } else if string.hasPrefix("rediss://") {
            throw RedisURLError("redis URL '\(RedisURL.redacted(string))': rediss:// (TLS) is not supported (hiredis 0.14 has no TLS)")
        } else {
            throw RedisURLError("redis URL '\(RedisURL.redacted(string))': expected redis://[:password@]host:port[/db] or unix:///path")
        }
    }

    /// The URL with the password replaced by `***` (safe to log).
    public var description: String {
        var auth = ""
        if password != nil { auth = (username ?? "") + ":***@" }
        switch endpoint {
        case let .tcp(host, port):
            let h = host.contains(":") ? "[\(host)]" : host
            return "redis://\(auth)\(h):\(port)" + (database != 0 ? "/\(database)" : "")
        case let .unix(path):
            var q: [String] = []
            if database != 0 { q.append("db=\(database)") }
            if let username { q.append("user=\(username)") }
            if password != nil { q.append("password=***") }
            return "unix://\(path)" + (q.isEmpty ? "" : "?" + q.joined(separator: "&"))
        }
    }

    private static func parseTCP(_ rest: String, original: String) throws(RedisURLError) -> RedisURL {
        func fail(_ why: String) -> RedisURLError { RedisURLError("redis URL '\(redacted(original))': \(why)") }
        var rest = Substring(rest)
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            guard let colon = userinfo.firstIndex(of: ":") else {
                throw fail("userinfo must be ':password' or 'user:password'")
            }
            let u = try percentDecode(userinfo[..<colon], fail)
            let p = try percentDecode(userinfo[userinfo.index(after: colon)...], fail)
            username = u.isEmpty ? nil : u
            password = p
            if p.isEmpty { throw fail("empty password") }
        }
        var hostPort = rest
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            hostPort = rest[..<slash]
            let dbText = rest[rest.index(after: slash)...]
            if !dbText.isEmpty {
                guard let d = Int(dbText), d >= 0 else { throw fail("database '\(dbText)' is not a non-negative integer") }
                database = d
            }
        }
        if hostPort.contains("?") { throw fail("query parameters are not supported for redis:// (put the db in the path)") }
        var host: Substring
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw fail("unterminated '[' in IPv6 host") }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw fail("unexpected '\(after)' after IPv6 host") }
                portText = after.dropFirst()
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = hostPort
        }
        if host.isEmpty { throw fail("missing host") }
        var port = 6379
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else { throw fail("port '\(portText)' is not in 1...65535") }
            port = p
        }
        return RedisURL(endpoint: .tcp(host: String(host), port: port), username: username, password: password, database: database)
    }

    private static func parseUnix(_ rest: String, original: String) throws(RedisURLError) -> RedisURL {
        func fail(_ why: String) -> RedisURLError { RedisURLError("redis URL '\(redacted(original))': \(why)") }
        var path = Substring(rest)
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            path = rest[..<q]
            query = rest[rest.index(after: q)...]
        }
        guard path.hasPrefix("/"), path.count > 1 else { throw fail("unix socket path must be absolute (unix:///path)") }
        var url = RedisURL(endpoint: .unix(path: try percentDecode(path, fail)))
        if !query.isEmpty {
            for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
                guard let eq = pair.firstIndex(of: "=") else { throw fail("query parameter '\(pair)' has no value") }
                let key = pair[..<eq]
                let value = try percentDecode(pair[pair.index(after: eq)...], fail)
                switch key {
                case "db":
                    guard let d = Int(value), d >= 0 else { throw fail("db '\(value)' is not a non-negative integer") }
                    url.database = d
                case "password":
                    if value.isEmpty { throw fail("empty password") }
                    url.password = value
                case "user", "username":
                    url.username = value.isEmpty ? nil : value
                default:
                    throw fail("unknown query parameter '\(key)' (expected db, password, user)")
                }
            }
        }
        if url.username != nil && url.password == nil { throw fail("user given without password") }
        return url
    }

    private static func percentDecode(_ s: Substring, _ fail: (String) -> RedisURLError) throws(RedisURLError) -> String {
        if !s.contains("%") { return String(s) }
        var out: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "%") {
                guard it.count >= 2, let hi = hexValue(it[it.startIndex]), let lo = hexValue(it[it.startIndex + 1]) else {
                    throw fail("bad percent-escape")
                }
                out.append(hi << 4 | lo)
                it = it.dropFirst(2)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The URL text with any password hidden (for error messages).
    static func redacted(_ s: String) -> String {
        var b = Array(s.utf8)
        func find(_ needle: String, from: Int) -> Int? {
            let n = Array(needle.utf8)
            guard b.count >= n.count else { return nil }
            var i = from
            while i + n.count <= b.count {
                if Array(b[i..<(i + n.count)]) == n { return i }
                i += 1
            }
            return nil
        }
        if let scheme = find("://", from: 0) {
            let start = scheme + 3
            let hostEnd = b[start...].firstIndex(of: UInt8(ascii: "/")) ?? b.count
            if let at = b[start..<hostEnd].lastIndex(of: UInt8(ascii: "@")),
               let colon = b[start..<at].firstIndex(of: UInt8(ascii: ":")) {
                b.replaceSubrange((colon + 1)..<at, with: Array("***".utf8))
            }
        }
        if let p = find("password=", from: 0) {
            let vs = p + 9
            let end = b[vs...].firstIndex(of: UInt8(ascii: "&")) ?? b.count
            b.replaceSubrange(vs..<end, with: Array("***".utf8))
        }
        return String(decoding: b, as: UTF8.self)
    }
}

public struct RedisURLError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
