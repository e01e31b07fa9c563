#include "adapters/wecom/callback_crypto.hpp"

#include "adapters/wecom/base64.hpp"
#include "bot/core/hex.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

namespace qunbot::wecom {
namespace {

constexpr std::size_t aes_key_size = 32;
constexpr std::size_t pkcs7_block = 32; // WeCom pads to 32, not AES's 16 (notes §1.3)
constexpr std::size_t random_prefix = 16;
constexpr std::size_t length_field = 4;

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

core::Error error(std::string_view code, std::string message)
{
    return core::make_error(std::string(code), std::move(message));
}

// AES-256-CBC with OpenSSL padding switched off: the 32-byte PKCS#7 block is done by hand.
bool aes_cbc(bool encrypt, std::string_view key, std::string_view in, std::string& out)
{
    CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
    if (!ctx) return false;
    const auto* k = reinterpret_cast<const unsigned char*>(key.data());
    if (EVP_CipherInit_ex(ctx.get(), EVP_aes_256_cbc(), nullptr, k, k, encrypt ? 1 : 0) != 1) return false;
    EVP_CIPHER_CTX_set_padding(ctx.get(), 0);
    out.resize(in.size() + 16);
    int n1 = 0;
    int n2 = 0;
    auto* o = reinterpret_cast<unsigned char*>(out.data());
    if (EVP_CipherUpdate(ctx.get(), o, &n1, reinterpret_cast<const unsigned char*>(in.data()),
                         static_cast<int>(in.size())) != 1)
        return false;
    if (EVP_CipherFinal_ex(ctx.get(), o + n1, &n2) != 1) return false;
    out.resize(static_cast<std::size_t>(n1 + n2));
    return true;
}

} // namespace

core::Result<CallbackCrypto> CallbackCrypto::create(core::Secret token, const core::Secret& encoding_aes_key,
                                                    std::string receive_id)
{
    const auto text = encoding_aes_key.reveal();
    if (text.size() != 43) {
        return error(crypto_error::illegal_aes_key,
                     "EncodingAESKey must be 43 characters, got " + std::to_string(text.size()) + " (-40004)");
    }
    auto key = base64_decode(std::string(text) + "=");
    if (!key || key->size() != aes_key_size) {
        return error(crypto_error::illegal_aes_key, "EncodingAESKey is not valid base64 for 32 bytes (-40004)");
    }
    if (token.empty()) return error(crypto_error::missing_parameter, "callback token is empty");
    core::Secret raw(std::move(*key));
    OPENSSL_cleanse(key->data(), key->size());
    return CallbackCrypto(std::move(token), std::move(raw), std::move(receive_id));
}

std::string CallbackCrypto::signature(std::string_view timestamp, std::string_view nonce, std::string_view data) const
{
    std::array<std::string_view, 4> parts{token_.reveal(), timestamp, nonce, data};
    std::sort(parts.begin(), parts.end());
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    if (md == nullptr) throw std::bad_alloc();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestInit_ex(md, EVP_sha1(), nullptr);
    for (auto p : parts) EVP_DigestUpdate(md, p.data(), p.size());
    EVP_DigestFinal_ex(md, digest, &len);
    EVP_MD_CTX_free(md);
    return core::to_hex(digest, len);
}

bool CallbackCrypto::verify(std::string_view msg_signature, std::string_view timestamp, std::string_view nonce,
                            std::string_view data) const
{
    const std::string expected = signature(timestamp, nonce, data);
    if (msg_signature.size() != expected.size()) return false;
    std::string given(msg_signature);
    std::transform(given.begin(), given.end(), given.begin(),
                   [](char c) { return (c >= 'A' && c <= 'F') ? static_cast<char>(c - 'A' + 'a') : c; });
    return CRYPTO_memcmp(given.data(), expected.data(), expected.size()) == 0;
}

core::Result<Decrypted> CallbackCrypto::decrypt_raw(std::string_view base64_ciphertext) const
{
    auto cipher = base64_decode(base64_ciphertext);
    if (!cipher) return error(crypto_error::bad_base64, "ciphertext is not valid base64 (-40010)");
    if (cipher->empty() || cipher->size() % pkcs7_block != 0) {
        return error(crypto_error::illegal_buffer,
                     "ciphertext length " + std::to_string(cipher->size()) + " is not a non-zero multiple of 32 (-40008)");
    }
    std::string plain;
    if (!aes_cbc(false, key_.reveal(), *cipher, plain)) {
        return error(crypto_error::decrypt_failed, "AES-256-CBC decryption failed (-40007)");
    }
    const auto pad = static_cast<unsigned char>(plain.back());
    if (pad < 1 || pad > pkcs7_block || pad > plain.size()) {
        return error(crypto_error::decrypt_failed, "invalid PKCS#7 padding (-40007)");
    }
    for (std::size_t i = plain.size() - pad; i < plain.size(); ++i) {
        if (static_cast<unsigned char>(plain[i]) != pad) {
            return error(crypto_error::decrypt_failed, "invalid PKCS#7 padding (-40007)");
        }
    }
    plain.resize(plain.size() - pad);
    if (plain.size() < random_prefix + length_field) {
        return error(crypto_error::illegal_buffer, "plaintext too short for the random prefix and length (-40008)");
    }
    const auto* p = reinterpret_cast<const unsigned char*>(plain.data()) + random_prefix;
    const std::uint32_t n = std::uint32_t(p[0]) << 24 | std::uint32_t(p[1]) << 16 | std::uint32_t(p[2]) << 8 | p[3];
    const std::size_t body = random_prefix + length_field;
    if (n > plain.size() - body) {
        return error(crypto_error::illegal_buffer,
                     "message length " + std::to_string(n) + " exceeds the decrypted data (-40008)");
    }
    Decrypted out;
    out.message = plain.substr(body, n);
    out.receive_id = plain.substr(body + n);
    return out;
}

core::Result<std::string> CallbackCrypto::decrypt(std::string_view base64_ciphertext) const
{
    auto d = decrypt_raw(base64_ciphertext);
    if (!d) return d.error();
    if (d->receive_id != receive_id_) {
        // Show the configured id's length only: ids are not secret, but keep messages short and stable.
        return error(crypto_error::receiveid_mismatch,
                     "receiveid in the message does not match the configured corp id (-40005)");
    }
    return std::move(d->message);
}

core::Result<std::string> CallbackCrypto::open(std::string_view msg_signature, std::string_view timestamp,
                                               std::string_view nonce, std::string_view encrypted) const
{
    if (msg_signature.empty() || timestamp.empty() || nonce.empty()) {
        return error(crypto_error::missing_parameter, "msg_signature, timestamp and nonce are required");
    }
    if (encrypted.empty()) return error(crypto_error::missing_parameter, "encrypted data is empty");
    if (!verify(msg_signature, timestamp, nonce, encrypted)) {
        return error(crypto_error::signature_mismatch, "msg_signature does not match (-40001)");
    }
    return decrypt(encrypted);
}

std::string CallbackCrypto::encrypt(std::string_view message, std::string_view random16) const
{
    if (random16.size() != random_prefix) throw std::invalid_argument("random prefix must be 16 bytes");
    std::string plain;
    plain.reserve(random_prefix + length_field + message.size() + receive_id_.size() + pkcs7_block);
    plain.append(random16);
    const auto n = static_cast<std::uint32_t>(message.size());
    plain += static_cast<char>(n >> 24 & 0xff);
    plain += static_cast<char>(n >> 16 & 0xff);
    plain += static_cast<char>(n >> 8 & 0xff);
    plain += static_cast<char>(n & 0xff);
    plain.append(message);
    plain.append(receive_id_);
    const std::size_t pad = pkcs7_block - plain.size() % pkcs7_block;
    plain.append(pad, static_cast<char>(pad));
    std::string cipher;
    if (!aes_cbc(true, key_.reveal(), plain, cipher)) throw std::runtime_error("AES-256-CBC encryption failed");
    OPENSSL_cleanse(plain.data(), plain.size());
    return base64_encode(cipher);
}

std::string CallbackCrypto::encrypt(std::string_view message) const
{
    return encrypt(message, random_alnum(random_prefix));
}

std::string CallbackCrypto::reply_xml(std::string_view encrypted, std::string_view timestamp,
                                      std::string_view nonce) const
{
    std::string out = "<xml>\n<Encrypt><![CDATA[";
    out.append(encrypted);
    out += "]]></Encrypt>\n<MsgSignature><![CDATA[";
    out += signature(timestamp, nonce, encrypted);
    out += "]]></MsgSignature>\n<TimeStamp>";
    out.append(timestamp);
    out += "</TimeStamp>\n<Nonce><![CDATA[";
    out.append(nonce);
    out += "]]></Nonce>\n</xml>";
    return out;
}

std::string CallbackCrypto::reply_json(std::string_view encrypted, std::string_view timestamp,
                                       std::string_view nonce) const
{
    // Base64, hex, digits: none of the four values can contain a character JSON must escape,
    // but timestamp and nonce come from the request URL, so escape them anyway.
    auto quoted = [](std::string_view s) {
        std::string q = "\"";
        for (char c : s) {
            if (c == '"' || c == '\\') q += '\\';
            if (static_cast<unsigned char>(c) < 0x20) continue;
            q += c;
        }
        return q + "\"";
    };
    return "{\"encrypt\":" + quoted(encrypted) + ",\"msgsignature\":" + quoted(signature(timestamp, nonce, encrypted)) +
           ",\"timestamp\":" + quoted(timestamp) + ",\"nonce\":" + quoted(nonce) + "}";
}

std::string random_alnum(std::size_t n)
{
    static constexpr std::string_view chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    std::string out(n, '\0');
    std::string bytes(n, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(n)) != 1) {
        throw std::runtime_error("RAND_bytes failed");
    }
    // 62 does not divide 256; the slight bias is irrelevant for a padding prefix or a nonce.
    for (std::size_t i = 0; i < n; ++i) out[i] = chars[static_cast<unsigned char>(bytes[i]) % chars.size()];
    return out;
}

} // namespace qunbot::wecom
