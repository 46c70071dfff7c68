import CNghttp2

/// SETTINGS we advertise and session options. Immutable; shared by every connection of a server.
public struct HTTP2Settings: Sendable {
    /// One stream per in-flight HTTP request through Envoy; Envoy itself caps at 1024 per connection.
    public var maxConcurrentStreams: UInt32 = 4096
    /// Per-stream receive window: large enough that a 62 KB body chunk never waits for WINDOW_UPDATE.
    public var initialWindowSize: UInt32 = 1 << 20
    /// Connection receive window (grown right after the preface).
    public var connectionWindowSize: Int32 = 16 << 20
    public var maxFrameSize: UInt32 = 1 << 16
    public var maxHeaderListSize: UInt32 = 64 << 10
    /// Output pulled from nghttp2 per connection before we stop and wait for the socket to drain.
    public var maxBufferedOutput: Int = 4 << 20

    public init() {}
}

/// nghttp2 session options shared by all server sessions (nghttp2 copies them at session creation).
final class SessionOptions: @unchecked Sendable {
    let option: OpaquePointer

    init() {
        var opt: OpaquePointer?
        precondition(nghttp2_option_new(&opt) == 0)
        option = opt!
        // Envoy ends every ext_proc stream with RST_STREAM: the default reset budget (1000 + 33/s) would
        // make nghttp2 GOAWAY a busy Envoy. Resets are our normal end of stream, so no limit.
        nghttp2_option_set_stream_reset_rate_limit(option, UInt64.max, UInt64.max)
        // Do not keep closed streams around for priority bookkeeping: high churn, no priorities.
        nghttp2_option_set_no_closed_streams(option, 1)
    }

    static let shared = SessionOptions()
}
