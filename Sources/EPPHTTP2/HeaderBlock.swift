import CNghttp2
import Glibc

/// Builds an `nghttp2_nv` array over one contiguous copy of the names and values; nghttp2 copies them
/// again at submit time (no NO_COPY flags), so the storage only has to live for the call.
@inline(__always)
func withHeaderBlock<R>(_ headers: [(String, String)], _ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
    var total = 0
    for (n, v) in headers { total += n.utf8.count + v.utf8.count }
    let storage = UnsafeMutablePointer<UInt8>.allocate(capacity: max(total, 1))
    let nva = UnsafeMutablePointer<nghttp2_nv>.allocate(capacity: max(headers.count, 1))
    defer { storage.deallocate(); nva.deallocate() }
    var offset = 0
    for (i, (n, v)) in headers.enumerated() {
        let np = storage + offset
        let nl = copyUTF8(n, to: np)
        offset += nl
        let vp = storage + offset
        let vl = copyUTF8(v, to: vp)
        offset += vl
        nva[i] = nghttp2_nv(name: np, value: vp, namelen: nl, valuelen: vl, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
    }
    return body(nva, headers.count)
}

@inline(__always)
private func copyUTF8(_ s: String, to p: UnsafeMutablePointer<UInt8>) -> Int {
    var s = s
    return s.withUTF8 { u in
        if let b = u.baseAddress { p.update(from: b, count: u.count) }
        return u.count
    }
}

/// Header pairs that never change, kept in static storage and passed with NO_COPY flags (hot path).
public final class StaticHeaderBlock: @unchecked Sendable {
    let nva: UnsafeMutablePointer<nghttp2_nv>
    let count: Int

    public init(_ headers: [(String, String)]) {
        count = headers.count
        nva = .allocate(capacity: max(count, 1))
        for (i, (n, v)) in headers.enumerated() {
            let np = strdup(n)!, vp = strdup(v)!
            nva[i] = nghttp2_nv(
                name: UnsafeMutableRawPointer(np).assumingMemoryBound(to: UInt8.self),
                value: UnsafeMutableRawPointer(vp).assumingMemoryBound(to: UInt8.self),
                namelen: n.utf8.count, valuelen: v.utf8.count,
                flags: UInt8(NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue))
        }
    }

    public static let grpcResponse = StaticHeaderBlock([(":status", "200"), ("content-type", "application/grpc")])
    public static let grpcOK = StaticHeaderBlock([("grpc-status", "0")])
}
