#pragma once
/// \file
/// The WeCom callback "加解密方案": msg_signature, AES-256-CBC with a 32-byte PKCS#7 block, the
/// `random16 | len | msg | receiveid` layout, URL verification and the encrypted passive reply
/// (protocol notes §1). Pure functions of the configured token, key and receiveid.

#include "bot/core/result.hpp"
#include "bot/core/secret.hpp"

#include <array>
#include <string>
#include <string_view>

namespace qunbot::wecom {

/// Error codes, as `core::Error::code`; they double as metric labels. The official SDK's
/// numbers are in the message so people can match them with WeCom's docs.
namespace crypto_error {
inline constexpr std::string_view signature_mismatch = "signature_mismatch";   // -40001
inline constexpr std::string_view missing_parameter = "missing_parameter";
inline constexpr std::string_view illegal_aes_key = "illegal_aes_key";         // -40004
inline constexpr std::string_view receiveid_mismatch = "receiveid_mismatch";   // -40005
inline constexpr std::string_view decrypt_failed = "decrypt_failed";           // -40007
inline constexpr std::string_view illegal_buffer = "illegal_buffer";           // -40008
inline constexpr std::string_view bad_base64 = "bad_base64";                   // -40010
} // namespace crypto_error

/// A decrypted envelope: the message and the receiveid found after it.
struct Decrypted {
    std::string message;
    std::string receive_id;
};

class CallbackCrypto {
public:
    /// Fails (illegal_aes_key) unless the EncodingAESKey is 43 base64 chars giving 32 bytes.
    static core::Result<CallbackCrypto> create(core::Secret token, const core::Secret& encoding_aes_key,
                                               std::string receive_id);

    /// Lowercase hex SHA-1 of the byte-wise sorted concatenation of token, timestamp, nonce, data.
    [[nodiscard]] std::string signature(std::string_view timestamp, std::string_view nonce,
                                        std::string_view data) const;
    /// Constant-time check of `msg_signature` (hex, either case).
    [[nodiscard]] bool verify(std::string_view msg_signature, std::string_view timestamp,
                              std::string_view nonce, std::string_view data) const;

    /// Base64 → AES → unpad → layout; returns message and the receiveid found (not checked).
    [[nodiscard]] core::Result<Decrypted> decrypt_raw(std::string_view base64_ciphertext) const;
    /// As `decrypt_raw`, and the receiveid must equal the configured one.
    [[nodiscard]] core::Result<std::string> decrypt(std::string_view base64_ciphertext) const;
    /// Verifies the signature, then decrypts. The order matters: nothing unauthenticated is parsed.
    [[nodiscard]] core::Result<std::string> open(std::string_view msg_signature, std::string_view timestamp,
                                                 std::string_view nonce, std::string_view encrypted) const;

    /// Encrypts with the given 16-byte random prefix (deterministic, for tests and vectors).
    [[nodiscard]] std::string encrypt(std::string_view message, std::string_view random16) const;
    /// Encrypts with a fresh random prefix.
    [[nodiscard]] std::string encrypt(std::string_view message) const;

    /// The encrypted passive reply, XML form (`<Encrypt/MsgSignature/TimeStamp/Nonce>`).
    [[nodiscard]] std::string reply_xml(std::string_view encrypted, std::string_view timestamp,
                                        std::string_view nonce) const;
    /// The encrypted passive reply, JSON form (`{encrypt, msgsignature, timestamp, nonce}`).
    [[nodiscard]] std::string reply_json(std::string_view encrypted, std::string_view timestamp,
                                         std::string_view nonce) const;

    [[nodiscard]] const std::string& receive_id() const noexcept { return receive_id_; }

private:
    CallbackCrypto(core::Secret token, core::Secret key, std::string receive_id)
        : token_(std::move(token)), key_(std::move(key)), receive_id_(std::move(receive_id)) {}

    core::Secret token_;
    core::Secret key_; // the 32 raw AES bytes; IV is its first 16
    std::string receive_id_;
};

/// A random string of `n` characters from [0-9A-Za-z], from OpenSSL's CSPRNG.
[[nodiscard]] std::string random_alnum(std::size_t n);

} // namespace qunbot::wecom
