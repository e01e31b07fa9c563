#pragma once
/// \file
/// A fake of WeChat Pay's enterprise red-packet API (notes §6) over mutual TLS on loopback: the
/// handshake fails without a client certificate from the test CA (the merchant certificate);
/// requests are XML and must carry a valid `sign` (merchant key) and `workwx_sign` (企业支付
/// secret). A bill number is one order: sending it again returns the first result and pays
/// nothing more; the same number with other terms is refused. Faults can be scripted, before
/// or after the payment is made; a hook runs when a payment has been made and before the answer
/// leaves, so a test can kill the client exactly there.

#include "fakes/tls_server.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace qunbot::fakes {

/// A scripted answer for the next send call(s).
struct PayFault {
    std::string err_code;        ///< result_code FAIL with this err_code (SYSTEMERROR, NOTENOUGH, ...)
    bool after_paying = false;   ///< pay first, then answer with the fault (the client cannot tell)
    bool drop = false;           ///< close the connection instead of answering (after paying if after_paying)
    std::chrono::milliseconds delay{0};
};

struct FakePayment {
    std::string billno;
    std::string openid;
    std::int64_t amount = 0;
    std::string send_listid;
};

class FakeWeChatPay {
public:
    FakeWeChatPay(const TestPki& pki, std::string mch_id, std::string appid, std::string mch_key, std::string payment_secret);
    ~FakeWeChatPay();

    [[nodiscard]] std::string base_url() const;
    void fail(PayFault fault, int count = 1);
    /// Runs (on the server's thread) after a payment is recorded, before its answer is sent.
    void on_paid(std::function<void(const FakePayment&)> hook);
    /// Orders paid, in order (each bill number once, however often it was sent).
    [[nodiscard]] std::vector<FakePayment> payments() const;
    [[nodiscard]] int send_calls() const;
    [[nodiscard]] int query_calls() const;
    /// Requests refused for a bad signature or malformed fields, with the reason.
    [[nodiscard]] std::vector<std::string> rejections() const;
    [[nodiscard]] std::uint64_t failed_handshakes() const noexcept { return server_->failed_handshakes(); }

private:
    FakeReply handle(const FakeRequest& req);
    FakeReply answer(std::map<std::string, std::string> fields) const;

    std::string mch_id_, appid_, mch_key_, payment_secret_;
    mutable std::mutex mutex_;
    std::deque<PayFault> faults_;
    std::function<void(const FakePayment&)> on_paid_;
    std::vector<FakePayment> paid_;
    int sends_ = 0;
    int queries_ = 0;
    std::vector<std::string> rejections_;
    std::unique_ptr<TlsServer> server_;
};

} // namespace qunbot::fakes
