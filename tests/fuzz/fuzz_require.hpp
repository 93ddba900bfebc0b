// A failed property in a fuzz target must crash, so that libFuzzer saves the
// input and the corpus replay in make test fails.
#pragma once

#include <cstdlib>

inline void require(bool condition) {
    if (!condition) {
        std::abort();
    }
}
