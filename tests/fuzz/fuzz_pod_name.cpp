// Fuzz target: the name rule. Any bytes either give a clear rejection or a
// valid, deterministic pod name whose form (kept or hashed) is unambiguous.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_require.hpp"
#include "pod_router/pod_name.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    static const pod_router::NamingPolicy policy = pod_router::NamingPolicy::create().value();
    const std::string_view identity(reinterpret_cast<const char *>(data), size);

    auto name = policy.pod_name(identity);
    const bool accepted =
        pod_router::validate_identity(identity, policy.max_identity_bytes()).has_value();
    require(name.has_value() == accepted);
    if (!name) {
        require(name.error().code == pod_router::ErrorCode::kInvalidIdentity);
        require(!name.error().message.empty());
        return 0;
    }
    require(pod_router::is_valid_pod_name(name.value()));
    require(name.value().rfind(policy.prefix() + "-", 0) == 0);
    const bool hashed = name.value().find("---") != std::string::npos;
    // A kept name is exactly prefix-identity and never contains "--".
    require(hashed || (name.value().find("--") == std::string::npos &&
                       name.value().substr(policy.prefix().size() + 1) == identity));
    require(policy.pod_name(identity).value() == name.value());
    return 0;
}
