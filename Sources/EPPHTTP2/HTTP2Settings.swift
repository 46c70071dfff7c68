import CNghttp2

/// SETTINGS we advertise, session options and the per-connection limits that protect the process from a
/// hostile client. Immutable; shared by every connection of a server.
public struct HTTP2Settings: Sendable {
    /// One stream per in-flight HTTP request through Envoy. Beyond it nghttp2 refuses new streams
    /// (RST_STREAM REFUSED_STREAM); Envoy then opens another connection.
    public var maxConcurrentStreams: UInt32 = 4096
    /// Per-stream receive window: large enough that a 62 KB body chunk never waits for WINDOW_UPDATE.
    public var initialWindowSize: UInt32 = 1 << 20
    /// Connection receive window (grown right after the preface).
    public var connectionWindowSize: Int32 = 16 << 20
    public var maxFrameSize: UInt32 = 1 << 16
    /// Request header block: decoded size (RFC 9113 §6.5.2: name + value + 32 per field), advertised as
    /// SETTINGS_MAX_HEADER_LIST_SIZE and enforced per stream (nghttp2 does not enforce its own setting).
    public var maxHeaderListSize: UInt32 = 64 << 10
    /// Request header fields per stream (pseudo-headers included).
    public var maxHeaderCount: Int = 100
    /// Output pulled from nghttp2 per connection before we stop and wait for the socket to drain.
    public var maxBufferedOutput: Int = 4 << 20
    /// Response bytes queued on a connection's streams that the peer has not taken (zero window, or a
    /// socket it never reads). Beyond it the connection is closed: a stalled peer cannot grow our memory.
    public var maxQueuedOutputBytes: Int = 64 << 20
    /// Client input the layers above hold for this connection's streams and have not consumed yet (partial
    /// gRPC messages, request bodies collected before the routing decision). A stream whose data would
    /// push the connection over it is ended with RESOURCE_EXHAUSTED; the others continue. Counted, not
    /// enforced with flow control: holding window for buffered bodies would stall Envoy's multiplexing.
    public var maxBufferedInputBytes: Int = 256 << 20
    /// Time from accept to a complete TLS handshake and HTTP/2 client preface (slowloris defence).
    public var handshakeTimeoutNanos: UInt64 = 10_000_000_000
    /// Rapid-reset defence: streams the client resets before they delivered one complete request message
    /// (gRPC message) cost a token from a per-connection bucket of this size, refilled at `earlyResetBudget`
    /// per 10 s. An empty bucket ends the connection with GOAWAY(ENHANCE_YOUR_CALM). Envoy's normal RST_STREAM
    /// at the end of each ext_proc stream comes after its messages, so it costs nothing. 0 disables the check.
    public var earlyResetBudget: Int = 1000

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
        // make nghttp2 GOAWAY a busy Envoy. Resets are our normal end of stream, so nghttp2 does not limit
        // them; `HTTP2Connection` charges only resets of streams that never delivered a request message.
        nghttp2_option_set_stream_reset_rate_limit(option, UInt64.max, UInt64.max)
        // Do not keep closed streams around for priority bookkeeping: high churn, no priorities.
        nghttp2_option_set_no_closed_streams(option, 1)
        // PING / SETTINGS floods: a peer whose ACKs pile up unsent (it does not read) past this count is
        // misbehaving and the session ends (nghttp2's default, stated here because we rely on it).
        nghttp2_option_set_max_outbound_ack(option, 1000)
        // SETTINGS frames with more entries than this end the session (nghttp2's default; 7 ids exist).
        nghttp2_option_set_max_settings(option, 32)
        // CONTINUATION flood (CVE-2024-27316 class): a header block may span at most this many frames.
        nghttp2_option_set_max_continuations(option, 8)
    }

    static let shared = SessionOptions()
}
