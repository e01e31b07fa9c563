#pragma once
/// \file
/// What can go wrong when calling the WeCom server API, as values: the kind decides retries
/// (notes §4.12), the errcode and errmsg are WeCom's own, `meaning` says it in words.

#include <string>
#include <string_view>

namespace qunbot::wecom {

enum class ApiErrorKind {
    token_invalid,       ///< 40001/40014/42001 after the one refresh-and-retry
    busy,                ///< -1 系统繁忙, still failing after the retries
    frequency_limited,   ///< 45009: back off (WeCom blocks for about the limit's period)
    concurrency_limited, ///< 45033: lower concurrency
    not_sent,            ///< network failure before the request left (connect, TLS): safe to retry
    unknown_outcome,     ///< timeout or broken connection after sending: WeCom may have acted
    server_error,        ///< HTTP 5xx
    bad_response,        ///< not the JSON WeCom answers with
    rejected,            ///< any other errcode: a request WeCom will not accept as it is
    credentials,         ///< gettoken failed: wrong corp id or secret (40001/40013), IP not trusted, ...
};

[[nodiscard]] std::string_view to_string(ApiErrorKind kind) noexcept;

struct ApiError {
    ApiErrorKind kind = ApiErrorKind::rejected;
    int errcode = 0;      ///< WeCom errcode (0 when the failure is not WeCom's answer)
    std::string errmsg;   ///< WeCom errmsg, or the network error
    std::string api;      ///< e.g. "externalcontact/add_msg_template"

    /// True where trying again later can succeed (busy, limits, network, 5xx).
    [[nodiscard]] bool transient() const noexcept;
    /// "externalcontact/mark_tag: 84061 (no friend relationship with the customer): not friend".
    [[nodiscard]] std::string describe() const;
};

/// Plain words for the errcodes qunbot meets (notes §4.12); empty if not known.
[[nodiscard]] std::string_view errcode_meaning(int errcode) noexcept;

} // namespace qunbot::wecom
