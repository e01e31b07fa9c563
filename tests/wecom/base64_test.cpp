#include "adapters/wecom/base64.hpp"

#include <catch2/catch.hpp>

using qunbot::wecom::base64_decode;
using qunbot::wecom::base64_encode;

TEST_CASE("base64 round-trips the RFC 4648 test vectors", "[wecom][base64]")
{
    // RFC 4648 §10.
    const std::pair<const char*, const char*> vectors[] = {
        {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
    for (const auto& [plain, encoded] : vectors) {
        CHECK(base64_encode(plain) == encoded);
        CHECK(base64_decode(encoded) == std::string(plain));
    }
}

TEST_CASE("base64 decoding ignores the spare bits of a non-canonical last character", "[wecom][base64]")
{
    // "Zh==" carries the same byte as "Zg==" with one spare bit set: Tencent's keys look like this.
    CHECK(base64_decode("Zh==") == std::string("f"));
    CHECK(base64_decode("Zm9=") == std::string("fo"));
}

TEST_CASE("base64 decoding rejects what is not base64", "[wecom][base64]")
{
    CHECK_FALSE(base64_decode("Zm9v!"));
    CHECK_FALSE(base64_decode("Z"));        // 6 bits are not a byte
    CHECK_FALSE(base64_decode("Zg=")); // padding that does not complete a quantum
    CHECK_FALSE(base64_decode("Zg==Zg==")); // padding in the middle
    CHECK_FALSE(base64_decode("Zm 9v"));
}
