#ifndef EPP_CCURL_SHIM_H
#define EPP_CCURL_SHIM_H
#include <curl/curl.h>
/* curl_easy_setopt / curl_multi_setopt are variadic: typed wrappers for Swift. */
static inline CURLcode shim_curl_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode shim_curl_easy_setopt_ptr(CURL *h, CURLoption o, const void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode shim_curl_easy_setopt_off_t(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode shim_curl_easy_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode shim_curl_easy_getinfo_ptr(CURL *h, CURLINFO i, void **v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode shim_curl_easy_getinfo_off_t(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLMcode shim_curl_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }
static inline CURLMcode shim_curl_multi_setopt_ptr(CURLM *m, CURLMoption o, const void *v) { return curl_multi_setopt(m, o, v); }
/* Function-pointer options, typed so Swift closures convert to @convention(c) without casts. */
static inline CURLcode shim_curl_easy_setopt_write_function(CURL *h, curl_write_callback f) {
    return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, f);
}
static inline CURLMcode shim_curl_multi_setopt_socket_function(CURLM *m, curl_socket_callback f) {
    return curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, f);
}
static inline CURLMcode shim_curl_multi_setopt_timer_function(CURLM *m, curl_multi_timer_callback f) {
    return curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, f);
}
/* CURLMsg's payload is a union; read the transfer result without relying on its import shape. */
static inline CURLcode shim_curl_msg_result(const CURLMsg *msg) { return msg->data.result; }
/* Macro constants that are spelled through other macros (not always imported). */
static inline int shim_curl_socket_timeout(void) { return CURL_SOCKET_TIMEOUT; }
#endif
