import CHiredis

/// A RESP2 reply, copied out of hiredis' `redisReply` before the callback returns (hiredis frees it).
public enum RedisReply: Sendable, Equatable, CustomStringConvertible {
    case string([UInt8])
    case array([RedisReply])
    case integer(Int64)
    case null
    case status(String)
    case error(String)

    /// Bulk string as UTF-8 text, or the status text.
    public var text: String? {
        switch self {
        case let .string(b): return String(decoding: b, as: UTF8.self)
        case let .status(s): return s
        default: return nil
        }
    }

    public var isError: Bool { if case .error = self { return true } else { return false } }

    public var description: String {
        switch self {
        case let .string(b): return "\"" + String(decoding: b, as: UTF8.self) + "\""
        case let .array(a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case let .integer(i): return "(integer) \(i)"
        case .null: return "(nil)"
        case let .status(s): return s
        case let .error(e): return "(error) \(e)"
        }
    }

    /// Deep copy of a hiredis reply (the client's reply callback; public so the fuzz target can feed
    /// hiredis' reader directly and check the copy against the C tree).
    public init(copying r: UnsafePointer<redisReply>) {
        let p = r.pointee
        switch p.type {
        case REDIS_REPLY_STRING:
            if let s = p.str, p.len > 0 {
                self = .string(Array(UnsafeRawBufferPointer(start: s, count: p.len)))
            } else {
                self = .string([])
            }
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            items.reserveCapacity(p.elements)
            if let el = p.element {
                for i in 0..<p.elements {
                    if let e = el[i] { items.append(RedisReply(copying: e)) } else { items.append(.null) }
                }
            }
            self = .array(items)
        case REDIS_REPLY_INTEGER:
            self = .integer(p.integer)
        case REDIS_REPLY_NIL:
            self = .null
        case REDIS_REPLY_STATUS:
            self = .status(RedisReply.text(p))
        case REDIS_REPLY_ERROR:
            self = .error(RedisReply.text(p))
        default:
            self = .error("unknown reply type \(p.type)")
        }
    }

    private static func text(_ p: redisReply) -> String {
        guard let s = p.str, p.len > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: s, count: p.len), as: UTF8.self)
    }
}

/// Why a command got no reply. Redis error replies (`-ERR …`) are not errors here: they arrive as
/// `.success(.error(message))`.
public enum RedisClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not connected (connecting, backing off after a failure, or handshake not done), or too many commands in flight.
    case unavailable
    /// The command's deadline passed. The connection is then reset (replies are FIFO) and re-established.
    case timeout
    /// The connection broke (or was reset because another command timed out) before the reply arrived.
    case disconnected
    /// `close()` was called.
    case closed

    public var description: String {
        switch self {
        case .unavailable: return "redis unavailable"
        case .timeout: return "redis command timed out"
        case .disconnected: return "redis connection lost"
        case .closed: return "redis client closed"
        }
    }
}
