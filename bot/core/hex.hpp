#pragma once
/// \file
/// Hexadecimal rendering of digests (signatures, commitments).

#include <cstddef>
#include <string>

namespace qunbot::core {

/// `n` bytes at `p` as hex, lower case unless `upper`.
[[nodiscard]] std::string to_hex(const unsigned char* p, std::size_t n, bool upper = false);

} // namespace qunbot::core
