// The name rule: which Kubernetes pod belongs to which user identity.
//
// The gateway (nginx module) and the controller must derive the same pod
// name from the same identity, so the rule lives here and nowhere else.
// docs/pod-names.md explains the scheme and why it cannot collide.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "pod_router/expected.hpp"

namespace pod_router {

inline constexpr std::string_view kDefaultPodNamePrefix = "user";
inline constexpr std::size_t kDefaultMaxIdentityBytes = 256;
// Identities are HTTP header or cookie values; nginx's default large header
// buffer is 8k, and no sane identity comes near this.
inline constexpr std::size_t kMaxIdentityBytesLimit = 4096;
// A pod name is an RFC 1123 DNS label.
inline constexpr std::size_t kPodNameMaxLength = 63;
// Leaves room for "-", "---" and the hash in the hashed form.
inline constexpr std::size_t kMaxPodNamePrefixLength = 30;
// 64 bits of SHA-256: about one collision expected only after 4 billion
// distinct non-safe identities (birthday bound), and safe names never hash.
inline constexpr std::size_t kPodNameHashHexLength = 16;
inline constexpr std::string_view kHashedFormSeparator = "---";

// True for an RFC 1123 label that also starts with a letter (what Kubernetes
// requires of a pod name that doubles as a hostname): 1..63 of [a-z0-9-],
// first a letter, last a letter or digit.
bool is_valid_pod_name(std::string_view name) noexcept;

// Rejects what must never be cleaned into a name: empty, longer than
// max_bytes, ASCII or C1 control characters, or bytes that are not UTF-8.
Status validate_identity(std::string_view identity, std::size_t max_bytes);

// 32 hex digits (128 bits) of the SHA-256 of the exact identity bytes: a
// label value (at most 63 characters) that selects a user's pods whatever
// bytes the identity holds.
Expected<std::string> identity_digest(std::string_view identity);

class NamingPolicy {
  public:
    // Validates the operator's settings once, at configuration time.
    static Expected<NamingPolicy> create(std::string_view prefix = kDefaultPodNamePrefix,
                                         std::size_t max_identity_bytes = kDefaultMaxIdentityBytes);

    // "<prefix>-<identity>" when the identity is already a safe lowercase
    // name that fits; "<prefix>-<cleaned>---<hash>" (or "<prefix>---<hash>"
    // when nothing survives cleaning) otherwise. Deterministic.
    Expected<std::string> pod_name(std::string_view identity) const;

    // The same name, written into out (kPodNameMaxLength + 1 bytes, NUL-
    // terminated); returns its length. Allocates nothing for an identity
    // that keeps its name: this runs on the gateway's hot path.
    Expected<std::size_t> pod_name_into(std::string_view identity, char *out) const;

    // A warm pool pod's name, "<prefix>--pool-<suffix>" (suffix: lowercase
    // hex from the caller's random source). No identity ever derives it: a
    // derived name never has "--" right after the prefix. Empty when the
    // suffix is not 1 to 16 lowercase hex digits.
    std::string pool_pod_name(std::string_view suffix) const;
    // Whether name has that form under this prefix.
    bool is_pool_pod_name(std::string_view name) const noexcept;

    const std::string &prefix() const noexcept { return prefix_; }
    std::size_t max_identity_bytes() const noexcept { return max_identity_bytes_; }

  private:
    NamingPolicy(std::string prefix, std::size_t max_identity_bytes)
        : prefix_(std::move(prefix)), max_identity_bytes_(max_identity_bytes) {}

    std::string prefix_;
    std::size_t max_identity_bytes_;
};

} // namespace pod_router
