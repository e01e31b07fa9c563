#include "fakes/fake_pay.hpp"

#include "adapters/wechat_pay/redpack.hpp"
#include "bot/core/secret.hpp"

namespace qunbot::fakes {

FakeWeChatPay::FakeWeChatPay(const TestPki& pki, std::string mch_id, std::string appid, std::string mch_key, std::string payment_secret)
    : mch_id_(std::move(mch_id)), appid_(std::move(appid)), mch_key_(std::move(mch_key)), payment_secret_(std::move(payment_secret))
{
    server_ = std::make_unique<TlsServer>(pki, [this](const FakeRequest& r) { return handle(r); }, 2, true);
}

FakeWeChatPay::~FakeWeChatPay() { server_.reset(); }

std::string FakeWeChatPay::base_url() const { return "https://127.0.0.1:" + std::to_string(server_->port()); }

void FakeWeChatPay::fail(PayFault fault, int count)
{
    std::lock_guard lock(mutex_);
    for (int i = 0; i < count; ++i) faults_.push_back(fault);
}

void FakeWeChatPay::on_paid(std::function<void(const FakePayment&)> hook)
{
    std::lock_guard lock(mutex_);
    on_paid_ = std::move(hook);
}

std::vector<FakePayment> FakeWeChatPay::payments() const
{
    std::lock_guard lock(mutex_);
    return paid_;
}

int FakeWeChatPay::send_calls() const
{
    std::lock_guard lock(mutex_);
    return sends_;
}

int FakeWeChatPay::query_calls() const
{
    std::lock_guard lock(mutex_);
    return queries_;
}

std::vector<std::string> FakeWeChatPay::rejections() const
{
    std::lock_guard lock(mutex_);
    return rejections_;
}

FakeReply FakeWeChatPay::answer(std::map<std::string, std::string> fields) const
{
    fields["sign"] = wechat_pay::pay_sign(fields, core::Secret(mch_key_));
    FakeReply r;
    r.body = wechat_pay::to_xml(fields);
    r.content_type = "text/xml; charset=UTF-8";
    return r;
}

FakeReply FakeWeChatPay::handle(const FakeRequest& req)
{
    wechat_pay::Fields f;
    auto fail_comm = [this](const std::string& why) {
        std::lock_guard lock(mutex_);
        rejections_.push_back(why);
        FakeReply r;
        r.body = wechat_pay::to_xml({{"return_code", "FAIL"}, {"return_msg", why}});
        r.content_type = "text/xml; charset=UTF-8";
        return r;
    };
    if (req.method != "POST" || !wechat_pay::from_xml(req.body, f)) return fail_comm("XML格式错误");
    const auto get = [&f](const char* k) {
        auto it = f.find(k);
        return it == f.end() ? std::string() : it->second;
    };
    if (get("sign") != wechat_pay::pay_sign(f, core::Secret(mch_key_))) return fail_comm("签名错误");
    if (get("mch_id") != mch_id_) return fail_comm("mch_id错误");
    const auto billno = get("mch_billno");
    std::map<std::string, std::string> base{{"return_code", "SUCCESS"}, {"return_msg", "OK"}, {"mch_billno", billno}, {"mch_id", mch_id_}};
    if (req.path == "/mmpaymkttransfers/queryworkwxredpack") {
        std::lock_guard lock(mutex_);
        ++queries_;
        for (const auto& p : paid_) {
            if (p.billno != billno) continue;
            base["result_code"] = "SUCCESS";
            base["status"] = "SENT";
            base["detail_id"] = p.send_listid;
            base["total_amount"] = std::to_string(p.amount);
            base["openid"] = p.openid;
            return answer(base);
        }
        base["result_code"] = "FAIL";
        base["err_code"] = "NOT_FOUND";
        base["err_code_des"] = "指定单号数据不存在";
        return answer(base);
    }
    if (req.path != "/mmpaymkttransfers/sendworkwxredpack") return fail_comm("接口不存在");
    // The 企业支付 signature over exactly its seven fields.
    if (get("workwx_sign") != wechat_pay::workwx_sign(f, core::Secret(payment_secret_))) {
        std::lock_guard lock(mutex_);
        rejections_.push_back("workwx_sign错误");
        base["result_code"] = "FAIL";
        base["err_code"] = "SIGN_ERROR";
        base["err_code_des"] = "企业微信签名错误";
        return answer(base);
    }
    auto refuse = [&](const std::string& code, const std::string& why) {
        std::lock_guard lock(mutex_);
        rejections_.push_back(code + ": " + why);
        base["result_code"] = "FAIL";
        base["err_code"] = code;
        base["err_code_des"] = why;
        return answer(base);
    };
    if (billno.empty() || billno.size() > 28 || billno.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos) {
        return refuse("PARAM_ERROR", "mch_billno must be 1-28 characters [0-9a-zA-Z]");
    }
    if (get("wxappid") != appid_) return refuse("PARAM_ERROR", "wxappid is not the corp id");
    if (get("sender_name").empty() == get("agentid").empty()) return refuse("PARAM_ERROR", "exactly one of sender_name and agentid");
    const auto amount = std::stoll(get("total_amount").empty() ? "0" : get("total_amount"));
    if ((amount < 100 || amount > 20000) && get("scene_id").empty()) return refuse("PARAM_ERROR", "amount outside 1-200 yuan needs scene_id");
    if (get("nonce_str").empty() || get("nonce_str").size() > 32) return refuse("PARAM_ERROR", "nonce_str");
    for (const char* k : {"re_openid", "act_name", "wishing"}) {
        if (get(k).empty()) return refuse("PARAM_ERROR", std::string(k) + " is required");
    }

    PayFault fault;
    bool faulted = false;
    std::function<void(const FakePayment&)> hook;
    FakePayment made;
    bool newly_paid = false;
    {
        std::lock_guard lock(mutex_);
        ++sends_;
        if (!faults_.empty()) {
            fault = faults_.front();
            faults_.pop_front();
            faulted = true;
        }
        if (faulted && !fault.after_paying) {
            if (fault.drop) {
                FakeReply r;
                r.drop = true;
                return r;
            }
            base["result_code"] = "FAIL";
            base["err_code"] = fault.err_code;
            base["err_code_des"] = "scripted";
            auto r = answer(base);
            r.delay = fault.delay;
            return r;
        }
        // One bill number, one order: a resend gets the first answer; other terms are refused.
        const FakePayment* existing = nullptr;
        for (const auto& p : paid_) {
            if (p.billno == billno) existing = &p;
        }
        if (existing && (existing->amount != amount || existing->openid != get("re_openid"))) {
            rejections_.push_back("FATAL_ERROR: " + billno + " reused with other terms");
            base["result_code"] = "FAIL";
            base["err_code"] = "FATAL_ERROR";
            base["err_code_des"] = "openid和原始单参数不一致";
            return answer(base);
        }
        if (existing) {
            made = *existing;
        } else {
            made = FakePayment{billno, get("re_openid"), amount, "1000041701" + std::to_string(100000 + paid_.size())};
            paid_.push_back(made);
            newly_paid = true;
        }
        hook = on_paid_;
    }
    if (newly_paid && hook) hook(made);
    if (faulted) {
        FakeReply r;
        if (fault.drop) {
            r.drop = true;
            return r;
        }
        base["result_code"] = "FAIL";
        base["err_code"] = fault.err_code;
        base["err_code_des"] = "scripted after paying";
        r = answer(base);
        r.delay = fault.delay;
        return r;
    }
    base["result_code"] = "SUCCESS";
    base["wxappid"] = appid_;
    base["re_openid"] = made.openid;
    base["total_amount"] = std::to_string(made.amount);
    base["send_listid"] = made.send_listid;
    return answer(base);
}

} // namespace qunbot::fakes
