#include "CSanitizerHooks.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EPP_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define EPP_TSAN 1
#endif

#ifdef EPP_TSAN
// From compiler-rt's <sanitizer/tsan_interface.h>; declared here so the build needs no sanitizer headers.
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);

void epp_tsan_acquire(const void *address) { __tsan_acquire((void *)address); }
void epp_tsan_release(const void *address) { __tsan_release((void *)address); }
int epp_tsan_annotations_enabled(void) { return 1; }
#else
void epp_tsan_acquire(const void *address) { (void)address; }
void epp_tsan_release(const void *address) { (void)address; }
int epp_tsan_annotations_enabled(void) { return 0; }
#endif
