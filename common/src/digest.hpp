// Hex digests through OpenSSL's EVP interface (the library nginx already
// links, so the module adds no new dependency for hashing).
#pragma once

#include <string>
#include <string_view>

#include "pod_router/expected.hpp"

namespace pod_router::detail {

Expected<std::string> sha256_hex(std::string_view data);
Expected<std::string> sha1_hex(std::string_view data);

} // namespace pod_router::detail
