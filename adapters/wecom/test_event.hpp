#pragma once
/// \file
/// Builds callbacks the way WeCom does: a plaintext event payload (notes §3 shapes), encrypted
/// and signed into a POST body and query. Used by `qunbot send-test-event`, the tests and the
/// load generator; never by the serving path.

#include "adapters/wecom/callback_crypto.hpp"
#include "bot/core/result.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace qunbot::wecom {

/// What to put in a test event. `kind` is one of `test_event_kinds()`.
struct TestEventSpec {
    std::string kind = "member_joined";
    std::string corp_id;
    std::string chat_id = "wrTestChat0001";
    std::vector<std::string> members{"wmTestMember0001"};
    std::string user = "zhangsan";              ///< staff userid
    std::string external_user = "wmTestCustomer0001";
    std::string text = "hello";
    std::string state;
    std::string msg_id;                         ///< messages: generated when empty
    std::string welcome_code;                   ///< contact_added: generated when empty
    int scene = 3;
    std::int64_t create_time = 0;               ///< 0: now
    std::string member_version;                 ///< CurMemVer; generated when empty
};

[[nodiscard]] const std::vector<std::string>& test_event_kinds();
/// The plaintext XML WeCom would encrypt; error "unknown_kind" for an unsupported kind.
[[nodiscard]] core::Result<std::string> make_test_payload(const TestEventSpec& spec);

/// A sealed callback: the query string (without '?') and the POST body.
struct SealedCallback {
    std::string query;
    std::string body;
};
/// Encrypts `payload`, signs it, and wraps it as WeCom does (XML body, or the JSON variant).
[[nodiscard]] SealedCallback seal_callback(const CallbackCrypto& crypto, std::string_view payload,
                                           std::string_view timestamp, std::string_view nonce, bool json = false);
/// The query of a URL-verification GET for `echo`, percent-encoded as WeCom does.
[[nodiscard]] std::string seal_url_verification(const CallbackCrypto& crypto, std::string_view echo,
                                                std::string_view timestamp, std::string_view nonce);

/// A fresh EncodingAESKey (43 chars) and a callback token, as the admin console would generate.
[[nodiscard]] std::string generate_encoding_aes_key();
[[nodiscard]] std::string generate_token();

/// Percent-encodes everything but unreserved characters (RFC 3986).
[[nodiscard]] std::string percent_encode(std::string_view s);

} // namespace qunbot::wecom
