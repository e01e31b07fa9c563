#include "adapters/media/qr.hpp"

#include <png.h>
#include <turbojpeg.h>
#include <zbar.h>

#include <cstring>
#include <memory>

namespace qunbot::media {

namespace {

struct Grey {
    unsigned width = 0;
    unsigned height = 0;
    std::vector<unsigned char> pixels;
};

core::Result<Grey> decode_png(std::string_view bytes, std::size_t max_pixels)
{
    png_image img;
    std::memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, bytes.data(), bytes.size())) {
        return core::make_error("image_decode", std::string("not a readable PNG: ") + img.message);
    }
    if (static_cast<std::size_t>(img.width) * img.height > max_pixels) {
        png_image_free(&img);
        return core::make_error("image_too_large", "the image has more than " + std::to_string(max_pixels) + " pixels");
    }
    img.format = PNG_FORMAT_GRAY;
    Grey g;
    g.width = img.width;
    g.height = img.height;
    g.pixels.resize(PNG_IMAGE_SIZE(img));
    if (!png_image_finish_read(&img, nullptr, g.pixels.data(), 0, nullptr)) {
        png_image_free(&img);
        return core::make_error("image_decode", std::string("broken PNG: ") + img.message);
    }
    return g;
}

core::Result<Grey> decode_jpeg(std::string_view bytes, std::size_t max_pixels)
{
    std::unique_ptr<void, decltype(&tjDestroy)> tj(tjInitDecompress(), tjDestroy);
    if (!tj) return core::make_error("image_decode", "libjpeg-turbo could not start");
    int w = 0, h = 0, sub = 0, colour = 0;
    auto* in = reinterpret_cast<const unsigned char*>(bytes.data());
    if (tjDecompressHeader3(tj.get(), in, static_cast<unsigned long>(bytes.size()), &w, &h, &sub, &colour) != 0 || w <= 0 || h <= 0) {
        return core::make_error("image_decode", std::string("not a readable JPEG: ") + tjGetErrorStr2(tj.get()));
    }
    if (static_cast<std::size_t>(w) * static_cast<std::size_t>(h) > max_pixels) {
        return core::make_error("image_too_large", "the image has more than " + std::to_string(max_pixels) + " pixels");
    }
    Grey g;
    g.width = static_cast<unsigned>(w);
    g.height = static_cast<unsigned>(h);
    g.pixels.resize(static_cast<std::size_t>(w) * static_cast<std::size_t>(h));
    if (tjDecompress2(tj.get(), in, static_cast<unsigned long>(bytes.size()), g.pixels.data(), w, 0, h, TJPF_GRAY, 0) != 0) {
        return core::make_error("image_decode", std::string("broken JPEG: ") + tjGetErrorStr2(tj.get()));
    }
    return g;
}

} // namespace

core::Result<std::vector<std::string>> find_qr_codes(std::string_view image, std::size_t max_pixels)
{
    core::Result<Grey> grey = core::make_error("image_format", "neither PNG nor JPEG");
    if (image.size() > 8 && std::memcmp(image.data(), "\x89PNG\r\n\x1a\n", 8) == 0) grey = decode_png(image, max_pixels);
    else if (image.size() > 3 && static_cast<unsigned char>(image[0]) == 0xFF && static_cast<unsigned char>(image[1]) == 0xD8) {
        grey = decode_jpeg(image, max_pixels);
    }
    if (!grey) return grey.error();
    zbar::zbar_image_scanner_t* scanner = zbar::zbar_image_scanner_create();
    zbar::zbar_image_scanner_set_config(scanner, zbar::ZBAR_NONE, zbar::ZBAR_CFG_ENABLE, 0);
    zbar::zbar_image_scanner_set_config(scanner, zbar::ZBAR_QRCODE, zbar::ZBAR_CFG_ENABLE, 1);
    zbar::zbar_image_t* img = zbar::zbar_image_create();
    zbar::zbar_image_set_format(img, zbar_fourcc('Y', '8', '0', '0'));
    zbar::zbar_image_set_size(img, grey->width, grey->height);
    // zbar only reads the buffer; it stays owned here (no cleanup handler).
    zbar::zbar_image_set_data(img, grey->pixels.data(), grey->pixels.size(), nullptr);
    std::vector<std::string> out;
    if (zbar::zbar_scan_image(scanner, img) > 0) {
        for (auto* s = zbar::zbar_image_first_symbol(img); s; s = zbar::zbar_symbol_next(s)) {
            out.emplace_back(zbar::zbar_symbol_get_data(s), zbar::zbar_symbol_get_data_length(s));
        }
    }
    zbar::zbar_image_destroy(img);
    zbar::zbar_image_scanner_destroy(scanner);
    return out;
}

} // namespace qunbot::media
