// cmocka from C++: its header needs these included first.
#pragma once

// clang-format off
#include <cstdarg>
#include <cstddef>
#include <csetjmp>
#include <cstdint>
extern "C" {
#include <cmocka.h>
}
// clang-format on

#include <cstdlib>
#include <string>
#include <string_view>

// cmocka's string assertions take C strings; these keep embedded bytes.
#define assert_string_view_equal(actual, expected)                                                 \
    assert_string_equal(std::string(actual).c_str(), std::string(expected).c_str())

inline bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

// The Kubernetes tiers run once on kube-sim and once on the real control
// plane (POD_ROUTER_CLUSTER=real, as the Python tiers read it). A test that
// needs kube-sim's fault injection (/kube-sim/faults) skips on the real one.
inline bool on_real_cluster() {
    const char *cluster = std::getenv("POD_ROUTER_CLUSTER");
    return cluster != nullptr && std::string_view(cluster) == "real";
}
