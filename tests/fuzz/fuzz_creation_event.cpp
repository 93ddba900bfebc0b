// Fuzz target: the creation event decoder. Any bytes either give a clear
// error or an event that re-encodes and decodes to the same fields.
#include <cstdint>
#include <string_view>

#include "fuzz_require.hpp"
#include "pod_router/creation_event.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    static const pod_router::NamingPolicy policy = pod_router::NamingPolicy::create().value();
    const std::string_view json(reinterpret_cast<const char *>(data), size);

    auto event = pod_router::decode_creation_event(json, policy);
    if (!event) {
        require(!event.error().message.empty());
        for (const char c : event.error().message) {
            require(c >= ' ' && c <= '~');
        }
        return 0;
    }
    auto encoded = pod_router::encode_creation_event(event.value(), policy);
    require(encoded.has_value());
    auto again = pod_router::decode_creation_event(encoded.value(), policy);
    require(again.has_value());
    require(again.value().identity == event.value().identity);
    require(again.value().pod == event.value().pod);
    require(again.value().request_id == event.value().request_id);
    require(again.value().timestamp_ms == event.value().timestamp_ms);
    return 0;
}
