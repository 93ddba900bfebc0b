#include "pod_router/pod_name.hpp"

#include <algorithm>
#include <cstdint>

#include "digest.hpp"

namespace pod_router {
namespace {

bool is_lower_alnum(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool is_lower_letter(char c) noexcept {
    return c >= 'a' && c <= 'z';
}

// "U+000A": at least four upper-case hex digits, as Unicode writes them.
std::string format_code_point(std::uint32_t code_point) {
    static constexpr char kHexDigits[] = "0123456789ABCDEF";
    std::string digits;
    for (; code_point != 0 || digits.size() < 4; code_point >>= 4U) {
        digits.insert(digits.begin(), kHexDigits[code_point & 0xfU]);
    }
    return "U+" + digits;
}

Error control_character_error(std::uint32_t code_point, std::size_t offset) {
    return Error{ErrorCode::kInvalidIdentity, "identity contains control character " +
                                                  format_code_point(code_point) +
                                                  " at byte offset " + std::to_string(offset)};
}

// Validates UTF-8 strictly (no overlongs, no surrogates, nothing above
// U+10FFFF) and rejects C0, DEL and C1 controls on the way. The identity ends
// up in JSON (which must be UTF-8), Redis and logs; a byte we cannot name is
// a byte we refuse.
Status check_identity_bytes(std::string_view identity) {
    const auto *bytes = reinterpret_cast<const unsigned char *>(identity.data());
    const std::size_t size = identity.size();
    std::size_t i = 0;
    while (i < size) {
        const unsigned char lead = bytes[i];
        if (lead < 0x80) {
            if (lead < 0x20 || lead == 0x7f) {
                return control_character_error(lead, i);
            }
            ++i;
            continue;
        }
        std::size_t length = 0;
        std::uint32_t code_point = 0;
        std::uint32_t smallest = 0;
        if (lead >= 0xc2 && lead <= 0xdf) {
            length = 2, code_point = lead & 0x1fU, smallest = 0x80;
        } else if (lead >= 0xe0 && lead <= 0xef) {
            length = 3, code_point = lead & 0x0fU, smallest = 0x800;
        } else if (lead >= 0xf0 && lead <= 0xf4) {
            length = 4, code_point = lead & 0x07U, smallest = 0x10000;
        }
        bool valid = length != 0 && i + length <= size;
        for (std::size_t k = 1; valid && k < length; ++k) {
            const unsigned char next = bytes[i + k];
            valid = (next & 0xc0U) == 0x80U;
            code_point = (code_point << 6U) | (next & 0x3fU);
        }
        valid = valid && code_point >= smallest && code_point <= 0x10ffff &&
                !(code_point >= 0xd800 && code_point <= 0xdfff);
        if (!valid) {
            return Error{ErrorCode::kInvalidIdentity,
                         "identity is not valid UTF-8 at byte offset " + std::to_string(i)};
        }
        if (code_point <= 0x9f) {
            return control_character_error(code_point, i);
        }
        i += length;
    }
    return Ok{};
}

// Safe identities keep their readable form. They may not contain "--", so
// that no safe name ever contains the hashed form's "---".
bool is_safe_identity(std::string_view identity) noexcept {
    if (identity.empty() || identity.front() == '-' || identity.back() == '-') {
        return false;
    }
    char previous = '\0';
    for (const char c : identity) {
        if (!(is_lower_alnum(c) || c == '-') || (c == '-' && previous == '-')) {
            return false;
        }
        previous = c;
    }
    return true;
}

// Lowercases ASCII letters, turns every other byte run into one "-", and
// trims hyphens at both ends. Only a readability aid: uniqueness comes from
// the hash of the original bytes.
std::string clean_for_name(std::string_view identity, std::size_t budget) {
    std::string cleaned;
    cleaned.reserve(budget);
    for (const char c : identity) {
        if (cleaned.size() == budget) {
            break;
        }
        char mapped = '-';
        if (is_lower_alnum(c)) {
            mapped = c;
        } else if (c >= 'A' && c <= 'Z') {
            mapped = static_cast<char>(c - 'A' + 'a');
        }
        if (mapped == '-' && (cleaned.empty() || cleaned.back() == '-')) {
            continue;
        }
        cleaned.push_back(mapped);
    }
    while (!cleaned.empty() && cleaned.back() == '-') {
        cleaned.pop_back();
    }
    return cleaned;
}

} // namespace

bool is_valid_pod_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > kPodNameMaxLength || !is_lower_letter(name.front()) ||
        !is_lower_alnum(name.back())) {
        return false;
    }
    for (const char c : name) {
        if (!is_lower_alnum(c) && c != '-') {
            return false;
        }
    }
    return true;
}

Expected<std::string> identity_digest(std::string_view identity) {
    Expected<std::string> digest = detail::sha256_hex(identity);
    if (!digest) {
        return digest.error();
    }
    return std::move(digest).value().substr(0, 32);
}

Status validate_identity(std::string_view identity, std::size_t max_bytes) {
    if (identity.empty()) {
        return Error{ErrorCode::kInvalidIdentity, "identity is empty"};
    }
    if (identity.size() > max_bytes) {
        return Error{ErrorCode::kInvalidIdentity, "identity is " + std::to_string(identity.size()) +
                                                      " bytes, longer than the limit of " +
                                                      std::to_string(max_bytes)};
    }
    return check_identity_bytes(identity);
}

Expected<NamingPolicy> NamingPolicy::create(std::string_view prefix,
                                            std::size_t max_identity_bytes) {
    if (prefix.empty() || prefix.size() > kMaxPodNamePrefixLength) {
        return Error{ErrorCode::kInvalidConfig, "pod name prefix must be 1 to " +
                                                    std::to_string(kMaxPodNamePrefixLength) +
                                                    " characters long"};
    }
    if (!is_valid_pod_name(prefix) || prefix.find("--") != std::string_view::npos) {
        return Error{ErrorCode::kInvalidConfig,
                     "pod name prefix must start with a lowercase letter, end with a letter or "
                     "digit, and contain only a-z, 0-9 and single hyphens"};
    }
    if (max_identity_bytes == 0 || max_identity_bytes > kMaxIdentityBytesLimit) {
        return Error{ErrorCode::kInvalidConfig, "maximum identity length must be 1 to " +
                                                    std::to_string(kMaxIdentityBytesLimit) +
                                                    " bytes"};
    }
    return NamingPolicy(std::string(prefix), max_identity_bytes);
}

Expected<std::size_t> NamingPolicy::pod_name_into(std::string_view identity, char *out) const {
    if (Status valid = validate_identity(identity, max_identity_bytes_); !valid) {
        return valid.error();
    }
    if (is_safe_identity(identity) && prefix_.size() + 1 + identity.size() <= kPodNameMaxLength) {
        char *end = std::copy(prefix_.begin(), prefix_.end(), out);
        *end++ = '-';
        end = std::copy(identity.begin(), identity.end(), end);
        *end = '\0';
        return static_cast<std::size_t>(end - out);
    }
    Expected<std::string> name = pod_name(identity);
    if (!name) {
        return name.error();
    }
    std::copy(name.value().begin(), name.value().end(), out);
    out[name.value().size()] = '\0';
    return name.value().size();
}

Expected<std::string> NamingPolicy::pod_name(std::string_view identity) const {
    if (Status valid = validate_identity(identity, max_identity_bytes_); !valid) {
        return valid.error();
    }
    if (is_safe_identity(identity) && prefix_.size() + 1 + identity.size() <= kPodNameMaxLength) {
        std::string name;
        name.reserve(prefix_.size() + 1 + identity.size());
        name.append(prefix_).append("-").append(identity);
        return name;
    }

    Expected<std::string> digest = detail::sha256_hex(identity);
    if (!digest) {
        return digest.error();
    }
    const std::size_t fixed_length =
        prefix_.size() + 1 + kHashedFormSeparator.size() + kPodNameHashHexLength;
    const std::string cleaned = clean_for_name(identity, kPodNameMaxLength - fixed_length);

    std::string name;
    name.reserve(kPodNameMaxLength);
    name.append(prefix_);
    if (!cleaned.empty()) {
        name.append("-").append(cleaned);
    }
    name.append(kHashedFormSeparator).append(digest.value(), 0, kPodNameHashHexLength);
    return name;
}

namespace {
constexpr std::string_view kPoolNameInfix = "--pool-";
constexpr std::size_t kMaxPoolSuffixLength = 16;

bool is_pool_suffix(std::string_view suffix) noexcept {
    return !suffix.empty() && suffix.size() <= kMaxPoolSuffixLength &&
           std::all_of(suffix.begin(), suffix.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}
} // namespace

std::string NamingPolicy::pool_pod_name(std::string_view suffix) const {
    if (!is_pool_suffix(suffix)) {
        return {};
    }
    std::string name;
    name.reserve(prefix_.size() + kPoolNameInfix.size() + suffix.size());
    name.append(prefix_).append(kPoolNameInfix).append(suffix);
    return name;
}

bool NamingPolicy::is_pool_pod_name(std::string_view name) const noexcept {
    const std::size_t head = prefix_.size() + kPoolNameInfix.size();
    return name.size() > head && name.substr(0, prefix_.size()) == prefix_ &&
           name.substr(prefix_.size(), kPoolNameInfix.size()) == kPoolNameInfix &&
           is_pool_suffix(name.substr(head));
}

} // namespace pod_router
