#ifndef EPP_COPENSSL_SHIM_H
#define EPP_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
/* Function-like macros are not imported by Swift: thin inline wrappers. */
static inline long shim_SSL_CTX_set_min_proto_version(SSL_CTX *c, int v) { return SSL_CTX_set_min_proto_version(c, v); }
static inline long shim_SSL_CTX_set_mode(SSL_CTX *c, long m) { return SSL_CTX_set_mode(c, m); }
static inline long shim_SSL_set_mode(SSL *s, long m) { return SSL_set_mode(s, m); }
static inline uint64_t shim_SSL_CTX_set_options(SSL_CTX *c, uint64_t o) { return SSL_CTX_set_options(c, o); }
static inline uint64_t shim_SSL_OP_NO_COMPRESSION(void) { return SSL_OP_NO_COMPRESSION; }
static inline uint64_t shim_SSL_OP_NO_RENEGOTIATION(void) { return SSL_OP_NO_RENEGOTIATION; }
static inline uint64_t shim_SSL_OP_CIPHER_SERVER_PREFERENCE(void) { return SSL_OP_CIPHER_SERVER_PREFERENCE; }
static inline long shim_SSL_MODE_PARTIAL_WRITE_MOVING(void) { return SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS; }

/* A self-signed P-256 certificate for CN=epp (+SAN localhost, 127.0.0.1), valid 10 years, installed in ctx.
   Written in C because the EVP/X509 helpers used here are macros or variadic in OpenSSL 3. Returns 1 on success. */
static inline int shim_use_self_signed_certificate(SSL_CTX *ctx) {
    int ok = 0;
    EVP_PKEY *key = NULL; X509 *crt = NULL; X509_EXTENSION *ext = NULL; X509V3_CTX v3;
    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
    if (!kctx || EVP_PKEY_keygen_init(kctx) <= 0) goto done;
    if (EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kctx, NID_X9_62_prime256v1) <= 0) goto done;
    if (EVP_PKEY_keygen(kctx, &key) <= 0) goto done;
    crt = X509_new();
    if (!crt) goto done;
    X509_set_version(crt, 2);
    {
        unsigned char serial[16]; RAND_bytes(serial, sizeof serial); serial[0] &= 0x7f;
        BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(crt)); BN_free(bn);
    }
    X509_gmtime_adj(X509_getm_notBefore(crt), -3600);
    X509_gmtime_adj(X509_getm_notAfter(crt), 60L * 60 * 24 * 3650);
    X509_set_pubkey(crt, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(crt), "CN", MBSTRING_ASC, (const unsigned char *)"epp", -1, -1, 0);
    X509_set_issuer_name(crt, X509_get_subject_name(crt));
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, crt, crt, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    if (ext) { X509_add_ext(crt, ext, -1); X509_EXTENSION_free(ext); }
    if (!X509_sign(crt, key, EVP_sha256())) goto done;
    if (SSL_CTX_use_certificate(ctx, crt) != 1) goto done;
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1) goto done;
    ok = SSL_CTX_check_private_key(ctx) == 1;
done:
    if (kctx) EVP_PKEY_CTX_free(kctx);
    if (key) EVP_PKEY_free(key);
    if (crt) X509_free(crt);
    return ok;
}
/* ALPN: select "h2" when the client offers it; otherwise no ALPN agreement (client gets no protocol). */
static int shim_alpn_select_h2(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                               const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl; (void)arg;
    static const unsigned char h2[] = {2, 'h', '2'};
    unsigned char *sel = NULL; unsigned char sellen = 0;
    if (SSL_select_next_proto(&sel, &sellen, h2, sizeof h2, in, inlen) != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel; *outlen = sellen;
    return SSL_TLSEXT_ERR_OK;
}
static inline void shim_SSL_CTX_enable_alpn_h2(SSL_CTX *ctx) { SSL_CTX_set_alpn_select_cb(ctx, shim_alpn_select_h2, NULL); }
static inline int shim_alpn_is_h2(const SSL *ssl) {
    const unsigned char *p = NULL; unsigned int n = 0;
    SSL_get0_alpn_selected(ssl, &p, &n);
    return n == 2 && p[0] == 'h' && p[1] == '2';
}
static inline int shim_ssl_error_want_read(void) { return SSL_ERROR_WANT_READ; }
static inline int shim_ssl_error_want_write(void) { return SSL_ERROR_WANT_WRITE; }
static inline int shim_ssl_error_zero_return(void) { return SSL_ERROR_ZERO_RETURN; }
/* mTLS: trust only certificates issued by the CAs in ca_file and require one from every client
   (SSL_VERIFY_FAIL_IF_NO_PEER_CERT); the CA names are also advertised in the CertificateRequest.
   STACK_OF is a macro, so this lives in C. Returns 1 on success. */
static inline int shim_SSL_CTX_require_client_certificates(SSL_CTX *ctx, const char *ca_file) {
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) return 0;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
    if (!names) return 0;
    SSL_CTX_set_client_CA_list(ctx, names);   /* ctx takes ownership */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    /* Session resumption with peer verification needs a session id context, else resumed handshakes fail. */
    static const unsigned char sid[] = "epp";
    return SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
}
/* True when the pending OpenSSL error says the private key does not belong to the certificate (ERR_GET_REASON is a macro). */
static inline int shim_err_is_key_mismatch(void) { return ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH; }
/* The installed certificate's serial (hex) and subject (one line) for logs; empty strings when none. */
static inline void shim_SSL_CTX_certificate_summary(SSL_CTX *ctx, char *serial, size_t serial_len, char *subject, size_t subject_len) {
    if (serial_len) serial[0] = 0;
    if (subject_len) subject[0] = 0;
    X509 *crt = SSL_CTX_get0_certificate(ctx);
    if (!crt) return;
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(crt), NULL);
    if (bn) {
        char *hex = BN_bn2hex(bn);
        if (hex) { snprintf(serial, serial_len, "%s", hex); OPENSSL_free(hex); }
        BN_free(bn);
    }
    X509_NAME_oneline(X509_get_subject_name(crt), subject, (int)subject_len);
}
#endif
