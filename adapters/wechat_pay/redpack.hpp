#pragma once
/// \file
/// WeCom enterprise red packets through WeChat Pay v2 (protocol notes §6): the XML bodies of
/// `mmpaymkttransfers/sendworkwxredpack` and `queryworkwxredpack`, their two signatures, and
/// what an answer means for the payout. Pure functions: the payout worker does the I/O.
///
/// Signatures: `workwx_sign` is MD5 over the sorted `k=v&...` of exactly act_name, mch_billno,
/// mch_id, nonce_str, re_openid, total_amount, wxappid, then `&secret=<企业支付 app secret>`,
/// upper-case hex; `sign` is MD5 over every other non-empty field (workwx_sign included) sorted,
/// then `&key=<merchant API key>`, upper-case hex.

#include "bot/core/secret.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace qunbot::wechat_pay {

using Fields = std::map<std::string, std::string>; ///< sorted by name, as the signatures need

/// MD5 of `data`, upper-case hex.
[[nodiscard]] std::string md5_upper(std::string_view data);
/// `sorted k=v&...` of the non-empty fields, skipping "sign".
[[nodiscard]] std::string sign_string(const Fields& fields);
[[nodiscard]] std::string workwx_sign(const Fields& fields, const core::Secret& payment_secret);
[[nodiscard]] std::string pay_sign(const Fields& fields, const core::Secret& mch_key);

/// One red packet to send.
struct RedpackRequest {
    std::string mch_billno;   ///< derived from the draw round and the pick: the same on every retry
    std::string mch_id;
    std::string wxappid;      ///< the corp id
    std::string sender_name;  ///< or agentid (mutually exclusive)
    int agent_id = 0;
    std::string re_openid;
    std::int64_t total_amount = 0; ///< fen
    std::string wishing;
    std::string act_name;
    std::string remark;
    std::string scene_id;     ///< PRODUCT_1..8: required below ¥1 or above ¥200
    std::string nonce_str;    ///< 32 random characters
};

/// The signed request fields (sign and workwx_sign filled).
[[nodiscard]] Fields send_fields(const RedpackRequest& r, const core::Secret& payment_secret, const core::Secret& mch_key);
/// The signed query fields for `mch_billno`.
[[nodiscard]] Fields query_fields(const std::string& mch_billno, const std::string& mch_id, const std::string& appid,
                                  const std::string& nonce_str, const core::Secret& mch_key);
/// `<xml><k><![CDATA[v]]></k>...</xml>`.
[[nodiscard]] std::string to_xml(const Fields& fields);
/// The child elements of the root `<xml>`; false when the body is not such XML.
[[nodiscard]] bool from_xml(std::string_view body, Fields& out);
/// 32 random [0-9A-Za-z] characters.
[[nodiscard]] std::string nonce();

/// What an answer means for the payout.
enum class Verdict : std::uint8_t {
    paid,         ///< result SUCCESS: the money went out (send_listid in the detail)
    retry,        ///< try again later with the same bill number (SYSTEMERROR, frequency limits)
    refused,      ///< a definite refusal (insufficient funds, limits, bad openid): nothing was paid; a person decides
    unknown,      ///< unreadable answer, unknown err_code, bad signature: it may have paid; a person must check
};
[[nodiscard]] std::string_view to_string(Verdict v) noexcept;

/// Reads a sendworkwxredpack answer (HTTP 200 body). `detail` gets what to record (never a
/// secret); `send_listid` the payment's id when paid.
[[nodiscard]] Verdict judge_send(std::string_view body, const core::Secret& mch_key, std::string& detail, std::string& send_listid);

/// What a queryworkwxredpack answer says about the bill number.
enum class QueryResult : std::uint8_t {
    paid,      ///< SENDING, SENT, RECEIVED, RFUND_ING, REFUND: the order exists and was paid out
    failed,    ///< FAILED: the order exists and did not pay (a person decides what next)
    not_found, ///< NOT_FOUND: no such order: sending (with the same number) is safe
    unknown,   ///< anything else
};
[[nodiscard]] QueryResult judge_query(std::string_view body, const core::Secret& mch_key, std::string& detail, std::string& send_listid);

} // namespace qunbot::wechat_pay
