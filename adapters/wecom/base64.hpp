#pragma once
/// \file
/// Base64 as WeCom uses it. Decoding is lenient about the spare low bits of the last character,
/// because Tencent-generated EncodingAESKeys are non-canonical (protocol notes §1.1), and strict
/// about everything else (alphabet, length, padding).

#include <optional>
#include <string>
#include <string_view>

namespace qunbot::wecom {

[[nodiscard]] std::string base64_encode(std::string_view bytes);
/// Standard alphabet, '=' padding optional; nullopt on any character outside the alphabet,
/// a length that cannot be base64, or padding in the middle.
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view text);

} // namespace qunbot::wecom
