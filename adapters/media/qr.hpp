#pragma once
/// \file
/// QR codes in images (ad cleanup: a QR code in a group image is usually an invitation to
/// someone's WeChat or group). PNG and JPEG are decoded to 8-bit grey (libpng, libjpeg-turbo)
/// and scanned with zbar. Pure: bytes in, the codes' contents out.

#include "bot/core/result.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace qunbot::media {

/// The contents of every QR code in `image` (PNG or JPEG), possibly none. Errors:
/// "image_format" (neither), "image_decode" (broken), "image_too_large" (more than
/// `max_pixels`, so a hostile image cannot make us allocate gigabytes).
[[nodiscard]] core::Result<std::vector<std::string>> find_qr_codes(std::string_view image, std::size_t max_pixels = 40'000'000);

} // namespace qunbot::media
