#include "bot/core/hex.hpp"

namespace qunbot::core {

std::string to_hex(const unsigned char* p, std::size_t n, bool upper)
{
    const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    std::string out(n * 2, '0');
    for (std::size_t i = 0; i < n; ++i) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    return out;
}

} // namespace qunbot::core
