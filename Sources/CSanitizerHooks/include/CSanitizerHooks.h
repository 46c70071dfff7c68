#ifndef EPP_SANITIZER_HOOKS_H
#define EPP_SANITIZER_HOOKS_H

// ThreadSanitizer happens-before annotations for locks TSan cannot see (Synchronization.Mutex parks on a
// futex inside the uninstrumented Swift runtime). Compiled in hooks.c, not inline here: Swift's C importer
// does not know the build is under -sanitize=thread, but SwiftPM compiles this target's .c file with
// -fsanitize=thread, so only there the calls reach the TSan runtime. In other builds they do nothing.

// Call right after taking the lock whose identity is `address`.
void epp_tsan_acquire(const void *address);
// Call right before releasing it.
void epp_tsan_release(const void *address);
// 1 when this target was compiled with ThreadSanitizer (the annotations are live), else 0.
int epp_tsan_annotations_enabled(void);

#endif
