import COpenSSL
import Glibc

public struct TLSError: Error, CustomStringConvertible {
    public let description: String
    init(_ what: String) {
        var detail = ""
        let code = ERR_get_error()
        if code != 0 {
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buf, 256)
            detail = ": " + String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        ERR_clear_error()
        description = what + detail
    }
}

/// A server SSL_CTX: TLS 1.2+, AEAD ciphers, no compression or renegotiation, ALPN h2, optional client-certificate
/// requirement (mTLS). Immutable once built; shared by every loop (OpenSSL contexts are thread-safe for SSL_new, and
/// each SSL keeps its context alive by reference count, so an old context outlives a certificate reload for exactly
/// as long as connections still use it).
public final class TLSContext: @unchecked Sendable {
    public let ctx: OpaquePointer
    /// Serial number (hex) and subject of the serving certificate, for logs.
    public let certificateSerial: String
    public let certificateSubject: String

    /// Loads `tls.crt` and `tls.key` from `certDirectory`, or makes a self-signed certificate when nil.
    /// With `clientCAFile`, only clients presenting a certificate issued by one of its CAs complete the handshake.
    public init(certDirectory: String?, clientCAFile: String? = nil) throws {
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSError("SSL_CTX_new") }
        self.ctx = ctx
        // From here on deinit frees ctx even when a later step throws.
        _ = shim_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)
        _ = shim_SSL_CTX_set_options(ctx, shim_SSL_OP_NO_COMPRESSION() | shim_SSL_OP_NO_RENEGOTIATION() | shim_SSL_OP_CIPHER_SERVER_PREFERENCE())
        _ = shim_SSL_CTX_set_mode(ctx, shim_SSL_MODE_PARTIAL_WRITE_MOVING())
        // RFC 9113 §9.2: ECDHE with AEAD for TLS 1.2 (TLS 1.3 suites are AEAD by definition).
        _ = SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20")
        shim_SSL_CTX_enable_alpn_h2(ctx)
        var failure: TLSError? = nil
        if let dir = certDirectory {
            let crt = dir + "/tls.crt", key = dir + "/tls.key"
            if SSL_CTX_use_certificate_chain_file(ctx, crt) != 1 { failure = TLSError("cannot load certificate \(crt)") }
            else if SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 {
                failure = TLSError(shim_err_is_key_mismatch() == 1 ? "private key \(key) does not match \(crt)" : "cannot load private key \(key)")
            }
            else if SSL_CTX_check_private_key(ctx) != 1 { failure = TLSError("private key \(key) does not match \(crt)") }
        } else if shim_use_self_signed_certificate(ctx) != 1 {
            failure = TLSError("cannot create a self-signed certificate")
        }
        if failure == nil, let ca = clientCAFile, shim_SSL_CTX_require_client_certificates(ctx, ca) != 1 {
            failure = TLSError("cannot load client CA file \(ca) (PEM certificates expected)")
        }
        var serial = [CChar](repeating: 0, count: 128), subject = [CChar](repeating: 0, count: 512)
        if failure == nil { shim_SSL_CTX_certificate_summary(ctx, &serial, serial.count, &subject, subject.count) }
        certificateSerial = cString(serial)
        certificateSubject = cString(subject)
        if let failure { throw failure }
    }

    deinit { SSL_CTX_free(ctx) }
}

private func cString(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
