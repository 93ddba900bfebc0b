#include "digest.hpp"

#include <openssl/evp.h>

namespace pod_router::detail {
namespace {

Expected<std::string> hex_digest(const EVP_MD *algorithm, std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_length = 0;
    // EVP_Digest, unlike the deprecated SHA256(), reports failure (for example
    // a FIPS provider that refuses an algorithm) instead of aborting.
    if (algorithm == nullptr ||
        EVP_Digest(data.data(), data.size(), digest, &digest_length, algorithm, nullptr) != 1) {
        return Error{ErrorCode::kInternal, "OpenSSL digest failed"};
    }
    static constexpr char kHexDigits[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(static_cast<std::size_t>(digest_length) * 2);
    for (unsigned int i = 0; i < digest_length; ++i) {
        hex.push_back(kHexDigits[digest[i] >> 4]);
        hex.push_back(kHexDigits[digest[i] & 0x0f]);
    }
    return hex;
}

} // namespace

Expected<std::string> sha256_hex(std::string_view data) {
    return hex_digest(EVP_sha256(), data);
}

Expected<std::string> sha1_hex(std::string_view data) {
    return hex_digest(EVP_sha1(), data);
}

} // namespace pod_router::detail
