#include "bot/core/secret.hpp"

#include <openssl/crypto.h>

namespace qunbot::core {

Secret::~Secret()
{
    // Wipe before the allocator reuses the memory; OPENSSL_cleanse is not optimised away.
    if (!value_.empty()) OPENSSL_cleanse(value_.data(), value_.size());
}

std::string Secret::redacted() const
{
    return "<secret:" + std::to_string(value_.size()) + " bytes>";
}

} // namespace qunbot::core
