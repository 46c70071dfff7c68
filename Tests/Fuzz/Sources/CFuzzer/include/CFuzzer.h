// libFuzzer's driver entry point (compiler-rt FuzzerInterface.h). SwiftPM
// renames every executable's `main`, so libFuzzer's own main never runs; our
// @main calls this instead.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv,
                        int (*UserCb)(const uint8_t *Data, size_t Size));
