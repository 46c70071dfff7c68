import Glibc
import Logging

/// `--log-format`: `text` for people, `json` for log pipelines (one object per line, like the reference's
/// `--zap-encoder json`).
public enum LogFormat: String, CaseIterable, Sendable {
    case text, json
}

/// Writes one line per record to stderr with a single write(2), so lines from different threads never interleave.
/// Holds no shared mutable state: each Logger owns its copy (swift-log handlers are values).
///
/// json: `{"ts":"2026-01-02T03:04:05.678901Z","level":"info","logger":"epp","message":"…", <metadata keys>…}`;
/// metadata keys are top-level fields (a key clashing with ts/level/logger/message is written as `meta.<key>`);
/// nested metadata becomes JSON objects and arrays.
/// text: `2026-01-02T03:04:05.678901Z info epp: message key=value …`, newlines escaped so a record stays one line.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let format: LogFormat
    private let fd: Int32

    public init(label: String, format: LogFormat, level: Logger.Level, fd: Int32 = 2,
                metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.format = format
        self.logLevel = level
        self.fd = fd
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        let line = format == .json
            ? Self.jsonLine(ts: Self.timestamp(), level: event.level, label: label, message: "\(event.message)", metadata: all)
            : Self.textLine(ts: Self.timestamp(), level: event.level, label: label, message: "\(event.message)", metadata: all)
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        bytes.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                if n > 0 { off += n } else if n < 0 && errno == EINTR { continue } else { return }   // never block the caller on a broken stderr
            }
        }
    }

    // MARK: formatting (static and pure, for tests)

    static let reserved: Set<String> = ["ts", "level", "logger", "message"]

    static func jsonLine(ts: String, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var out = "{\"ts\":"
        appendJSONString(ts, to: &out)
        out += ",\"level\":"
        appendJSONString(level.rawValue, to: &out)
        out += ",\"logger\":"
        appendJSONString(label, to: &out)
        out += ",\"message\":"
        appendJSONString(message, to: &out)
        for key in metadata.keys.sorted() {
            out += ","
            appendJSONString(reserved.contains(key) ? "meta." + key : key, to: &out)
            out += ":"
            appendJSON(metadata[key]!, to: &out)
        }
        out += "}"
        return out
    }

    static func textLine(ts: String, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var out = "\(ts) \(level.rawValue) \(label): \(escapeLine(message))"
        for key in metadata.keys.sorted() {
            out += " \(key)=\(escapeLine(textValue(metadata[key]!)))"
        }
        return out
    }

    private static func textValue(_ v: Logger.Metadata.Value) -> String {
        switch v {
        case .string(let s): return s
        case .stringConvertible(let c): return c.description
        case .array(let a): return "[" + a.map(textValue).joined(separator: ", ") + "]"
        case .dictionary(let d): return "[" + d.keys.sorted().map { "\($0): \(textValue(d[$0]!))" }.joined(separator: ", ") + "]"
        }
    }

    private static func escapeLine(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D }) else { return s }
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }

    private static func appendJSON(_ v: Logger.Metadata.Value, to out: inout String) {
        switch v {
        case .string(let s): appendJSONString(s, to: &out)
        case .stringConvertible(let c): appendJSONString(c.description, to: &out)
        case .array(let a):
            out += "["
            for (i, e) in a.enumerated() {
                if i > 0 { out += "," }
                appendJSON(e, to: &out)
            }
            out += "]"
        case .dictionary(let d):
            out += "{"
            for (i, k) in d.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                appendJSONString(k, to: &out)
                out += ":"
                appendJSON(d[k]!, to: &out)
            }
            out += "}"
        }
    }

    static func appendJSONString(_ s: String, to out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20 || u.value == 0x7F || u.value == 0x2028 || u.value == 0x2029:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }

    /// RFC 3339 UTC with microseconds, from the wall clock (no Foundation on this path).
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var secs = now.tv_sec
        var tm = tm()
        gmtime_r(&secs, &tm)
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        return "\(pad(Int(tm.tm_year) + 1900, 4))-\(pad(Int(tm.tm_mon) + 1, 2))-\(pad(Int(tm.tm_mday), 2))T"
            + "\(pad(Int(tm.tm_hour), 2)):\(pad(Int(tm.tm_min), 2)):\(pad(Int(tm.tm_sec), 2)).\(pad(now.tv_nsec / 1000, 6))Z"
    }
}
