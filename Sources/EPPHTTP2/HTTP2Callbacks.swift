import CNghttp2
import Glibc

/// The nghttp2 callback table, built once and shared by every session (nghttp2 copies it per session).
/// Callbacks are capture-free C functions; the connection comes back through `user_data`.
final class HTTP2Callbacks: @unchecked Sendable {
    let callbacks: OpaquePointer

    static let shared = HTTP2Callbacks()

    @inline(__always)
    static func connection(_ ud: UnsafeMutableRawPointer?) -> HTTP2Connection {
        Unmanaged<HTTP2Connection>.fromOpaque(ud!).takeUnretainedValue()
    }

    static let readCallback: nghttp2_data_source_read_callback = { _, _, buf, length, flags, source, _ in
        let stream = Unmanaged<HTTP2Stream>.fromOpaque(source!.pointee.ptr!).takeUnretainedValue()
        return stream.pull(into: buf!, length: length, flags: flags!)
    }

    /// Request header names kept on `HTTP2Stream.requestHeaders`.
    static let retainedNames: [[UInt8]] = [":path", "content-type", "grpc-timeout", "grpc-encoding", ":method", "user-agent"].map { Array($0.utf8) }

    @inline(__always)
    static func isRetained(_ name: UnsafeRawBufferPointer) -> Bool {
        for candidate in retainedNames where candidate.count == name.count {
            if candidate.withUnsafeBytes({ memcmp($0.baseAddress!, name.baseAddress!, name.count) }) == 0 { return true }
        }
        return false
    }

    private init() {
        var cbs: OpaquePointer?
        precondition(nghttp2_session_callbacks_new(&cbs) == 0)
        callbacks = cbs!

        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, ud in
            let f = frame!.pointee
            if f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) && f.headers.cat == NGHTTP2_HCAT_REQUEST {
                HTTP2Callbacks.connection(ud).beginStream(f.hd.stream_id)
            }
            return 0
        }

        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, namelen, value, valuelen, _, ud in
            let f = frame!.pointee
            let conn = HTTP2Callbacks.connection(ud)
            guard f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), f.headers.cat == NGHTTP2_HCAT_REQUEST,
                  let s = conn.stream(f.hd.stream_id) else { return 0 }
            // Over the limits: stop storing; the layer above answers the stream with the reason.
            guard conn.countHeader(s, nameLength: namelen, valueLength: valuelen) else { return 0 }
            // Keep only the headers the layers above read (gRPC needs these); the rest would cost an
            // allocation each per stream for nothing.
            let nameBytes = UnsafeRawBufferPointer(start: name, count: namelen)
            guard HTTP2Callbacks.isRetained(nameBytes) else { return 0 }
            let n = String(decoding: nameBytes, as: UTF8.self)
            let v = String(decoding: UnsafeBufferPointer(start: value, count: valuelen), as: UTF8.self)
            s.requestHeaders.append((n, v))
            return 0
        }

        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, ud in
            let f = frame!.pointee
            let conn = HTTP2Callbacks.connection(ud)
            let endStream = f.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            conn.frameReceived()
            switch UInt32(f.hd.type) {
            case NGHTTP2_HEADERS.rawValue:
                guard let s = conn.stream(f.hd.stream_id) else { return 0 }
                if f.headers.cat == NGHTTP2_HCAT_REQUEST { conn.headersComplete(s) }
                if endStream && !s.isClosed { s.remoteEnded = true; s.handler?.streamRemoteEnded(s) }
            case NGHTTP2_DATA.rawValue:
                guard endStream, let s = conn.stream(f.hd.stream_id) else { return 0 }
                s.remoteEnded = true
                s.handler?.streamRemoteEnded(s)
            case NGHTTP2_RST_STREAM.rawValue:
                conn.peerResetStream(f.hd.stream_id)   // called before nghttp2 closes the stream
            default: break
            }
            return 0
        }

        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, sid, data, len, ud in
            guard let s = HTTP2Callbacks.connection(ud).stream(sid), let h = s.handler else { return 0 }
            h.streamData(s, UnsafeRawBufferPointer(start: data, count: len))
            return 0
        }

        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, sid, code, ud in
            HTTP2Callbacks.connection(ud).streamClosed(sid, errorCode: code)
            return 0
        }

        // gRPC: if our trailers went out before the client half-closed, reset with NO_ERROR so the client
        // stops sending (nghttp2 1.52 leaves the stream half-closed otherwise).
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks) { session, frame, ud in
            let f = frame!.pointee
            if f.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) {
                HTTP2Callbacks.connection(ud).goawaySent(errorCode: f.goaway.error_code)
                return 0
            }
            guard f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
                  f.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0,
                  let s = HTTP2Callbacks.connection(ud).stream(f.hd.stream_id), !s.remoteEnded else { return 0 }
            _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), f.hd.stream_id, NGHTTP2_NO_ERROR.rawValue)
            return 0
        }
    }
}
