#include "adapters/wecom/callback_crypto.hpp"

#include "adapters/wecom/base64.hpp"

#include <catch2/catch.hpp>
#include <openssl/evp.h>

using qunbot::core::Secret;
using qunbot::wecom::CallbackCrypto;
namespace err = qunbot::wecom::crypto_error;

namespace {

// Published vectors, protocol notes §1.10. Expected values are the published ones, not ours.
constexpr const char* token_a = "QDG6eK";
constexpr const char* key_a = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
constexpr const char* corp_a = "wx5823bf96d3bd56c7";

constexpr const char* a1_encrypt =
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";

constexpr const char* a2_encrypt =
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==";
constexpr const char* a2_msg = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n"
                               "<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
                               "<CreateTime>1409659813</CreateTime>\n"
                               "<MsgType><![CDATA[text]]></MsgType>\n"
                               "<Content><![CDATA[hello]]></Content>\n"
                               "<MsgId>4561255354251345929</MsgId>\n"
                               "<AgentID>218</AgentID>\n"
                               "</xml>";

constexpr const char* c1_encrypt =
    "CZWs4CWRpI4VolQlvn4dlEC1alN2MUEY2VklGehgBVLBrlVF7SyT+SV+Toj43l4ayJ9UMGKphktKKmP7B2j/P1ey67XB8PBgS7Wr5/8+w/yWriZv3Vmoo/MH3/1HsIWZrPQ3N2mJrelStIfI2Y8kLKXA7EhfZgZX4o+ffdkZDM76SEl79Ib9mw7TGjZ9Aw/x/A2VjNbV1E8BtEbRxYYcQippYNw7hr8sFfa3nW1xLdxokt8QkRX83vK3DFP2F6TQFPL2Tu98UwhcUpPvdJBuu1/yiOQIScppV3eOuLWEsko=";
constexpr const char* c1_msg = "{\"ToUserName\":\"wx5823bf96d3bd56c7\",\"FromUserName\":\"mycreate\",\"CreateTime\": 1409659813,"
                               "\"MsgType\":\"text\",\"Content\":\"hello\",\"MsgId\":4561255354251345929,\"AgentID\": 218}";

constexpr const char* token_e = "123456";
constexpr const char* key_e = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
constexpr const char* corp_e = "wx49f0ab532d5d035a";
constexpr const char* e2_encrypt =
    "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=";
constexpr const char* e2_msg = "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n"
                               "<FromUserName><![CDATA[messense]]></FromUserName>\n"
                               "<CreateTime>1411525903</CreateTime>\n"
                               "<MsgType><![CDATA[text]]></MsgType>\n"
                               "<Content><![CDATA[test]]></Content>\n"
                               "<MsgId>4363689963896700987</MsgId>\n"
                               "<AgentID>1</AgentID>\n"
                               "</xml>";

CallbackCrypto make(const char* token, const char* key, const char* corp)
{
    auto c = CallbackCrypto::create(Secret(token), Secret(key), corp);
    REQUIRE(c.ok());
    return std::move(c).value();
}

// Encrypts raw bytes with the vector-A key and no padding, to build malformed plaintexts.
std::string raw_encrypt_a(const std::string& plain)
{
    const auto key = *qunbot::wecom::base64_decode(std::string(key_a) + "=");
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    const auto* k = reinterpret_cast<const unsigned char*>(key.data());
    EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), nullptr, k, k);
    EVP_CIPHER_CTX_set_padding(ctx, 0);
    std::string out(plain.size() + 32, '\0');
    int n1 = 0, n2 = 0;
    EVP_EncryptUpdate(ctx, reinterpret_cast<unsigned char*>(out.data()), &n1,
                      reinterpret_cast<const unsigned char*>(plain.data()), static_cast<int>(plain.size()));
    EVP_EncryptFinal_ex(ctx, reinterpret_cast<unsigned char*>(out.data()) + n1, &n2);
    EVP_CIPHER_CTX_free(ctx);
    out.resize(static_cast<std::size_t>(n1 + n2));
    return qunbot::wecom::base64_encode(out);
}

std::string be32(std::uint32_t n)
{
    return {static_cast<char>(n >> 24), static_cast<char>(n >> 16 & 0xff), static_cast<char>(n >> 8 & 0xff),
            static_cast<char>(n & 0xff)};
}

} // namespace

TEST_CASE("signature is SHA-1 over the sorted parts (published worked example)", "[wecom][crypto]")
{
    // sha1 of sorted ["0","c","a","b"] = a8addbc9… (notes §1.2).
    const auto c = make("a", key_a, corp_a);
    CHECK(c.signature("b", "c", "0") == "a8addbc99f8b3f51d2adbceb605d650b9a8940e2");
}

TEST_CASE("vector A1: URL verification echostr", "[wecom][crypto][vector]")
{
    const auto c = make(token_a, key_a, corp_a);
    CHECK(c.signature("1409659589", "263014780", a1_encrypt) == "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3");
    auto plain = c.open("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "1409659589", "263014780", a1_encrypt);
    REQUIRE(plain.ok());
    CHECK(*plain == "1616140317555161061");
}

TEST_CASE("vector A2: XML event, 32-byte PKCS#7 pad of 30", "[wecom][crypto][vector]")
{
    const auto c = make(token_a, key_a, corp_a);
    auto d = c.decrypt_raw(a2_encrypt);
    REQUIRE(d.ok());
    CHECK(d->message == a2_msg);
    CHECK(d->message.size() == 284);
    CHECK(d->receive_id == corp_a);
    auto opened = c.open("477715d11cdb4164915debcba66cb864d751f3e6", "1409659813", "1372623149", a2_encrypt);
    REQUIRE(opened.ok());
    CHECK(*opened == a2_msg);
    // Byte-exact re-encryption with the recovered random prefix.
    CHECK(c.encrypt(a2_msg, "0960688932c47ef1") == a2_encrypt);
}

TEST_CASE("vector C1: JSON variant", "[wecom][crypto][vector]")
{
    const auto c = make(token_a, key_a, corp_a);
    auto opened = c.open("0623cbc5a8cbee5bcc137c70de99575366fc2af3", "1409659813", "1372623149", c1_encrypt);
    REQUIRE(opened.ok());
    CHECK(*opened == c1_msg);
    CHECK(opened->size() == 164);
    CHECK(c.encrypt(c1_msg, "EDH75AiKExevY8L3") == c1_encrypt);
}

TEST_CASE("vector E2: wechatpy, pad byte 1", "[wecom][crypto][vector]")
{
    const auto c = make(token_e, key_e, corp_e);
    auto opened = c.open("74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "1411525903", "461056294", e2_encrypt);
    REQUIRE(opened.ok());
    CHECK(*opened == e2_msg);
    CHECK(c.encrypt(e2_msg, "ec90b1530358d4d3") == e2_encrypt);
}

TEST_CASE("vector E3: deterministic encrypted passive reply, byte for byte", "[wecom][crypto][vector]")
{
    const auto c = make(token_e, key_e, corp_e);
    const std::string msg = "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n"
                            "<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n"
                            "<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n"
                            "<CreateTime>1411525903</CreateTime>\n</xml>";
    const std::string expected =
        "<xml>\n<Encrypt><![CDATA[9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3]]></Encrypt>\n"
        "<MsgSignature><![CDATA[407518b7649e86ef23978113f92d27afa9296533]]></MsgSignature>\n"
        "<TimeStamp>1411525903</TimeStamp>\n<Nonce><![CDATA[461056294]]></Nonce>\n</xml>";
    const auto encrypted = c.encrypt(msg, "1234567890123456");
    CHECK(c.reply_xml(encrypted, "1411525903", "461056294") == expected);
}

TEST_CASE("JSON passive reply carries the same signature under 'msgsignature'", "[wecom][crypto]")
{
    const auto c = make(token_e, key_e, corp_e);
    const auto json = c.reply_json("QUJD", "1411525903", "461056294");
    CHECK(json == "{\"encrypt\":\"QUJD\",\"msgsignature\":\"" + c.signature("1411525903", "461056294", "QUJD") +
                      "\",\"timestamp\":\"1411525903\",\"nonce\":\"461056294\"}");
}

TEST_CASE("encrypt then decrypt round-trips, including multi-byte UTF-8 and block-aligned sizes", "[wecom][crypto]")
{
    const auto c = make(token_a, key_a, corp_a);
    // The random prefix, length and receiveid are 16+4+18 = 38 bytes: a 26-byte message ends on
    // a 64-byte boundary and so gets a full 32-byte pad block.
    for (const std::string& msg : {std::string(), std::string("欢迎加入门店福利群🎉"), std::string(26, 'x'), std::string(1000, 'y')}) {
        auto d = c.decrypt(c.encrypt(msg));
        REQUIRE(d.ok());
        CHECK(*d == msg);
    }
}

TEST_CASE("the key must be 43 characters of base64 for 32 bytes", "[wecom][crypto][negative]")
{
    auto short_key = CallbackCrypto::create(Secret("t"), Secret(std::string(key_a).substr(0, 42)), corp_a);
    REQUIRE_FALSE(short_key.ok());
    CHECK(short_key.error().code == err::illegal_aes_key);
    auto bad_chars = CallbackCrypto::create(Secret("t"), Secret(std::string(42, 'A') + "!"), corp_a);
    REQUIRE_FALSE(bad_chars.ok());
    CHECK(bad_chars.error().code == err::illegal_aes_key);
    // The message must not leak the key.
    CHECK(bad_chars.error().message.find("AAAA") == std::string::npos);
}

TEST_CASE("a wrong or missing signature is refused before decryption", "[wecom][crypto][negative]")
{
    const auto c = make(token_a, key_a, corp_a);
    auto wrong = c.open("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd4", "1409659589", "263014780", a1_encrypt);
    REQUIRE_FALSE(wrong.ok());
    CHECK(wrong.error().code == err::signature_mismatch);
    auto other_ts = c.open("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "1409659590", "263014780", a1_encrypt);
    CHECK(other_ts.error().code == err::signature_mismatch);
    auto truncated = c.open("5c45ff5e21c57e6ad56bac8758b79b1d9ac89f", "1409659589", "263014780", a1_encrypt);
    CHECK(truncated.error().code == err::signature_mismatch);
    auto missing = c.open("", "1409659589", "263014780", a1_encrypt);
    CHECK(missing.error().code == err::missing_parameter);
    // Upper-case hex is the same signature.
    CHECK(c.open("5C45FF5E21C57E6AD56BAC8758B79B1D9AC89FD3", "1409659589", "263014780", a1_encrypt).ok());
    // Another token, same everything else.
    const auto other = make("QDG6eL", key_a, corp_a);
    CHECK(other.open("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "1409659589", "263014780", a1_encrypt).error().code ==
          err::signature_mismatch);
}

TEST_CASE("a message for another receiveid is refused", "[wecom][crypto][negative]")
{
    const auto c = make(token_a, key_a, "ww_other_corp");
    auto d = c.decrypt(a2_encrypt);
    REQUIRE_FALSE(d.ok());
    CHECK(d.error().code == err::receiveid_mismatch);
}

TEST_CASE("malformed ciphertexts are refused with the specific reason", "[wecom][crypto][negative]")
{
    const auto c = make(token_a, key_a, corp_a);
    SECTION("not base64") { CHECK(c.decrypt("@@@@").error().code == err::bad_base64); }
    SECTION("not a multiple of 32 bytes")
    {
        CHECK(c.decrypt(qunbot::wecom::base64_encode(std::string(16, 'a'))).error().code == err::illegal_buffer);
        CHECK(c.decrypt("").error().code == err::illegal_buffer);
    }
    SECTION("pad byte 0")
    {
        std::string plain = "0123456789abcdef" + be32(3) + "abc" + corp_a;
        plain.append(64 - plain.size(), '\0');
        CHECK(c.decrypt(raw_encrypt_a(plain)).error().code == err::decrypt_failed);
    }
    SECTION("pad byte 33 is beyond the 32-byte block")
    {
        std::string plain = "0123456789abcdef" + be32(3) + "abc" + corp_a;
        plain.append(64 - plain.size(), '\x21');
        CHECK(c.decrypt(raw_encrypt_a(plain)).error().code == err::decrypt_failed);
    }
    SECTION("inconsistent pad bytes")
    {
        std::string plain = "0123456789abcdef" + be32(3) + "abc" + corp_a;
        plain.append(64 - plain.size() - 1, '\x05');
        plain += '\x04';
        CHECK(c.decrypt(raw_encrypt_a(plain)).error().code == err::decrypt_failed);
    }
    SECTION("length field longer than the data")
    {
        std::string plain = "0123456789abcdef" + be32(1000) + "abc" + corp_a;
        const auto pad = 32 - plain.size() % 32;
        plain.append(pad, static_cast<char>(pad));
        CHECK(c.decrypt(raw_encrypt_a(plain)).error().code == err::illegal_buffer);
    }
    SECTION("too short for the random prefix and length")
    {
        std::string plain = "0123456789abc";
        plain.append(32 - plain.size(), static_cast<char>(32 - plain.size()));
        CHECK(c.decrypt(raw_encrypt_a(plain)).error().code == err::illegal_buffer);
    }
}
