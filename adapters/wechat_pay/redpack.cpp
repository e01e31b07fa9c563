#include "adapters/wechat_pay/redpack.hpp"

#include "bot/core/hex.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pugixml.hpp>

#include <array>
#include <stdexcept>

namespace qunbot::wechat_pay {

std::string md5_upper(std::string_view data)
{
    unsigned char d[16];
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), d, &len, EVP_md5(), nullptr) != 1 || len != 16) throw std::runtime_error("MD5 failed in OpenSSL");
    return core::to_hex(d, 16, true);
}

std::string sign_string(const Fields& fields)
{
    std::string s;
    for (const auto& [k, v] : fields) {
        if (v.empty() || k == "sign") continue;
        if (!s.empty()) s += '&';
        s += k + "=" + v;
    }
    return s;
}

std::string workwx_sign(const Fields& fields, const core::Secret& payment_secret)
{
    Fields only;
    for (const char* k : {"act_name", "mch_billno", "mch_id", "nonce_str", "re_openid", "total_amount", "wxappid"}) {
        if (auto it = fields.find(k); it != fields.end()) only.emplace(k, it->second);
    }
    return md5_upper(sign_string(only) + "&secret=" + std::string(payment_secret.reveal()));
}

std::string pay_sign(const Fields& fields, const core::Secret& mch_key)
{
    return md5_upper(sign_string(fields) + "&key=" + std::string(mch_key.reveal()));
}

Fields send_fields(const RedpackRequest& r, const core::Secret& payment_secret, const core::Secret& mch_key)
{
    Fields f{{"nonce_str", r.nonce_str},
             {"mch_billno", r.mch_billno},
             {"mch_id", r.mch_id},
             {"wxappid", r.wxappid},
             {"re_openid", r.re_openid},
             {"total_amount", std::to_string(r.total_amount)},
             {"wishing", r.wishing},
             {"act_name", r.act_name},
             {"remark", r.remark},
             {"scene_id", r.scene_id}};
    // sender_name and agentid are mutually exclusive (notes §6).
    if (r.agent_id > 0) f["agentid"] = std::to_string(r.agent_id);
    else f["sender_name"] = r.sender_name;
    f["workwx_sign"] = workwx_sign(f, payment_secret);
    f["sign"] = pay_sign(f, mch_key);
    for (auto it = f.begin(); it != f.end();) it = it->second.empty() ? f.erase(it) : std::next(it);
    return f;
}

Fields query_fields(const std::string& mch_billno, const std::string& mch_id, const std::string& appid, const std::string& nonce_str,
                    const core::Secret& mch_key)
{
    Fields f{{"nonce_str", nonce_str}, {"mch_billno", mch_billno}, {"mch_id", mch_id}, {"appid", appid}};
    f["sign"] = pay_sign(f, mch_key);
    return f;
}

std::string to_xml(const Fields& fields)
{
    pugi::xml_document doc;
    auto root = doc.append_child("xml");
    for (const auto& [k, v] : fields) root.append_child(k.c_str()).append_child(pugi::node_cdata).set_value(v.c_str());
    struct Writer : pugi::xml_writer {
        std::string out;
        void write(const void* data, std::size_t size) override { out.append(static_cast<const char*>(data), size); }
    } w;
    doc.save(w, "", pugi::format_raw | pugi::format_no_declaration);
    return w.out;
}

bool from_xml(std::string_view body, Fields& out)
{
    pugi::xml_document doc;
    // pugixml never loads external entities or DTDs, so an answer cannot pull in files.
    if (!doc.load_buffer(body.data(), body.size(), pugi::parse_default)) return false;
    auto root = doc.child("xml");
    if (!root) return false;
    for (auto c : root.children()) {
        if (c.type() == pugi::node_element) out[c.name()] = c.child_value();
    }
    return true;
}

std::string nonce()
{
    static constexpr char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    std::array<unsigned char, 32> b{};
    if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) throw std::runtime_error("the system random generator failed");
    std::string s;
    for (const auto c : b) s += alphabet[c % 62];
    return s;
}

std::string_view to_string(Verdict v) noexcept
{
    switch (v) {
    case Verdict::paid: return "paid";
    case Verdict::retry: return "retry";
    case Verdict::refused: return "refused";
    case Verdict::unknown: return "unknown";
    }
    return "?";
}

namespace {

std::string get(const Fields& f, const char* k)
{
    auto it = f.find(k);
    return it == f.end() ? std::string() : it->second;
}

// Reads the common envelope; false (with `detail`) when the answer cannot be trusted.
bool envelope(std::string_view body, const core::Secret& mch_key, Fields& f, std::string& detail)
{
    if (!from_xml(body, f)) {
        detail = "the answer is not WeChat Pay XML";
        return false;
    }
    if (auto s = f.find("sign"); s != f.end() && !s->second.empty() && s->second != pay_sign(f, mch_key)) {
        detail = "the answer's signature does not match the merchant key";
        return false;
    }
    return true;
}

} // namespace

Verdict judge_send(std::string_view body, const core::Secret& mch_key, std::string& detail, std::string& send_listid)
{
    Fields f;
    if (!envelope(body, mch_key, f, detail)) return Verdict::unknown;
    if (get(f, "return_code") != "SUCCESS") {
        // A communication-level refusal (bad signature, malformed request): nothing was processed.
        detail = "return_code " + get(f, "return_code") + ": " + get(f, "return_msg");
        return get(f, "return_code") == "FAIL" ? Verdict::refused : Verdict::unknown;
    }
    if (get(f, "result_code") == "SUCCESS") {
        send_listid = get(f, "send_listid");
        detail = "paid, send_listid " + send_listid;
        return Verdict::paid;
    }
    const auto code = get(f, "err_code");
    detail = "err_code " + code + ": " + get(f, "err_code_des");
    // The documented rule: SYSTEMERROR is retried with the same bill number. Frequency limits and
    // "being processed" also leave the order to be asked again under the same number.
    if (code == "SYSTEMERROR" || code == "FREQ_LIMIT" || code == "PROCESSING") return Verdict::retry;
    // Refusals that say nothing was paid (codes of the cash red-packet family; the enterprise
    // red-packet table is unconfirmed, notes §7.11, so only well-known ones are listed).
    static constexpr std::string_view refusals[] = {"NOTENOUGH", "NO_AUTH", "SENDNUM_LIMIT", "MONEY_LIMIT", "SENDAMOUNT_LIMIT",
                                                    "PARAM_ERROR", "OPENID_ERROR", "SIGN_ERROR", "CA_ERROR", "XML_ERROR",
                                                    "ILLEGAL_APPID", "MCHID_ERROR", "SEND_FAILED", "FATAL_ERROR"};
    for (const auto r : refusals) {
        if (code == r) return Verdict::refused;
    }
    // "请商户务必不要换单重试…联系客服确认": unknown codes go to a person.
    return Verdict::unknown;
}

QueryResult judge_query(std::string_view body, const core::Secret& mch_key, std::string& detail, std::string& send_listid)
{
    Fields f;
    if (!envelope(body, mch_key, f, detail)) return QueryResult::unknown;
    if (get(f, "return_code") != "SUCCESS") {
        detail = "query: return_code " + get(f, "return_code") + ": " + get(f, "return_msg");
        return QueryResult::unknown;
    }
    if (get(f, "result_code") != "SUCCESS") {
        detail = "query: err_code " + get(f, "err_code") + ": " + get(f, "err_code_des");
        return get(f, "err_code") == "NOT_FOUND" ? QueryResult::not_found : QueryResult::unknown;
    }
    const auto status = get(f, "status");
    detail = "query: status " + status;
    send_listid = get(f, "detail_id").empty() ? get(f, "send_listid") : get(f, "detail_id");
    if (status == "FAILED") return QueryResult::failed;
    if (status == "SENDING" || status == "SENT" || status == "RECEIVED" || status == "RFUND_ING" || status == "REFUND") return QueryResult::paid;
    return QueryResult::unknown;
}

} // namespace qunbot::wechat_pay
