// QR codes in group images: real QR codes made with libqrencode, written as PNG (libpng) and
// JPEG (libjpeg-turbo), found by the decoder; broken and hostile inputs get their errors; the
// archive reads them from group images; the `qr_code` condition with an allow-list.
#include "adapters/media/qr.hpp"
#include "adapters/wecom/base64.hpp"
#include "rules/engine.hpp"
#include "rules/loader.hpp"
#include "support/support.hpp"

#include <catch2/catch.hpp>
#include <turbojpeg.h>

#include <cstring>
#include <memory>

using namespace qunbot;

namespace {

std::string jpeg_of(const std::vector<unsigned char>& px, int side)
{
    std::unique_ptr<void, decltype(&tjDestroy)> tj(tjInitCompress(), tjDestroy);
    unsigned char* buf = nullptr;
    unsigned long size = 0;
    REQUIRE(tjCompress2(tj.get(), px.data(), side, 0, side, TJPF_GRAY, &buf, &size, TJSAMP_GRAY, 90, 0) == 0);
    std::string out(reinterpret_cast<char*>(buf), size);
    tjFree(buf);
    return out;
}

} // namespace

TEST_CASE("QR codes are found in PNG and JPEG images", "[qr]")
{
    int side = 0;
    const auto px = test::qr_pixels("https://u.wechat.com/EAbcdefGHIJ", side);
    const auto png = test::png_of(px, side);
    auto codes = media::find_qr_codes(png);
    REQUIRE(codes.ok());
    CHECK(*codes == std::vector<std::string>{"https://u.wechat.com/EAbcdefGHIJ"});
    codes = media::find_qr_codes(jpeg_of(px, side));
    REQUIRE(codes.ok());
    CHECK(*codes == std::vector<std::string>{"https://u.wechat.com/EAbcdefGHIJ"});

    // A photo without a code; broken and hostile inputs.
    std::vector<unsigned char> plain(static_cast<std::size_t>(side * side), 200);
    CHECK(media::find_qr_codes(test::png_of(plain, side))->empty());
    CHECK(media::find_qr_codes("GIF89a....").error().code == "image_format");
    CHECK(media::find_qr_codes(png.substr(0, png.size() / 2)).error().code == "image_decode");
    CHECK(media::find_qr_codes(png, 100).error().code == "image_too_large");
}

TEST_CASE("qr_code conditions: any code, or codes outside an allow-list", "[qr]")
{
    const auto r = rules::load_rule_sources({{"q.yaml", R"(version: 1
rules:
  - id: qr
    on: message
    when: { qr_code: { allow: [ourshop.com] } }
    do: [ { assign_tag: 二维码广告 } ]
)"}});
    REQUIRE(r.ok());
    rules::State state;
    state.group.id = "wrG";
    core::Event e;
    e.kind = core::EventKind::message;
    e.group_id = "wrG";
    e.actor = "wmA";
    e.message_type = "image";
    e.dedup_key = "q1";
    CHECK(rules::evaluate(*r.rules, e, state).tags.empty()); // no code
    e.attributes = {{"qr", "https://www.ourshop.com/member"}};
    CHECK(rules::evaluate(*r.rules, e, state).tags.empty()); // our own page
    e.attributes = {{"qr", "https://www.ourshop.com/member\nhttps://u.wechat.com/EAbc"}};
    CHECK(rules::evaluate(*r.rules, e, state).tags.size() == 1); // a personal WeChat card too
    e.attributes = {{"qr", "WIFI:S:shop;T:WPA;P:12345678;;"}};
    CHECK(rules::evaluate(*r.rules, e, state).tags.size() == 1); // not a link at all
}
