#pragma once
/// \file
/// A fake of the WeCom server API (notes §4) over TLS on loopback: the real paths, JSON shapes
/// and errcodes, with the server-side rules that matter to a client (token validity and early
/// revocation, one-shot 20 s welcome codes, message/send duplicate check, one mass send per
/// customer group per day, mark_tag only for a staff member's own customers, robots by key).
/// Faults can be scripted per API. Everything WeCom would have *done* is recorded, so tests can
/// check that no action was lost or performed twice.

#include "fakes/tls_server.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace qunbot::fakes {

/// A scripted failure for the next call(s) of one API.
struct Fault {
    int errcode = 0;                   ///< answer with this errcode (e.g. -1, 45009)
    int http_status = 0;               ///< or with this HTTP status (e.g. 502)
    std::chrono::milliseconds delay{0}; ///< or answer this late (after acting, like a slow server)
    bool drop = false;                 ///< or close the connection (after acting)
    bool before_acting = true;         ///< errcode/status faults: the call has no effect
};

struct FakeGroupMember {
    std::string userid;
    int type = 2; ///< 1 staff, 2 external contact
    std::string name;
    std::int64_t join_time = 0;
    int join_scene = 3;
};

struct FakeGroup {
    std::string chat_id;
    std::string name;
    std::string owner;
    std::vector<FakeGroupMember> members;
    std::vector<std::string> admins;
};

/// Something WeCom did (or would show a person).
struct Effect {
    std::string api;      ///< e.g. "message/send"
    nlohmann::json body;  ///< the request that caused it
};

/// The openid the fake gives `member` (deterministic, so the pay fake can be told to expect it).
[[nodiscard]] std::string openid_of(const std::string& member);

class FakeWeCom {
public:
    FakeWeCom(std::string corp_id, std::string secret, const TestPki& pki);
    ~FakeWeCom();

    [[nodiscard]] std::string base_url() const; ///< "https://127.0.0.1:PORT"
    [[nodiscard]] std::uint64_t connections() const noexcept { return server_->connections(); }

    /// Clock for expiries (token, welcome codes, duplicate check). Default: the real clock.
    void set_clock(std::function<std::int64_t()> now_ms);
    /// Seconds a new token lives (default 7200).
    void set_token_lifetime(int seconds);
    /// Revokes every issued token early (WeCom may do so): calls with them get 40014.
    void revoke_tokens();
    /// Every answer is this late (a slow link), besides scripted delays.
    void set_latency(std::chrono::milliseconds latency);
    /// Queues `count` faults for `api` ("gettoken", "message/send", "webhook/send", ...).
    void fail(const std::string& api, Fault fault, int count = 1);

    void add_group(FakeGroup group);
    /// Makes `external_userid` a customer of staff member `userid` (needed by mark_tag).
    void add_contact(const std::string& userid, const std::string& external_userid);
    /// A welcome code as the add_external_contact callback would carry, valid 20 s from now.
    std::string issue_welcome_code();
    /// An AI bot's response_url as its callback would carry: usable once, for one hour (notes §1.11).
    std::string issue_response_url();
    void add_robot(const std::string& key);
    /// An internal group chat as if this app had created it.
    void add_appchat(const std::string& chat_id, const std::vector<std::string>& users);
    /// The owner sends mass-send task `msgid` in the client (get_groupmsg_send_result → 1).
    void confirm_task(const std::string& msgid);
    void add_tag_group(const std::string& group_name, const std::vector<std::string>& tags);

    /// Calls received per API (including failed ones).
    [[nodiscard]] std::map<std::string, int> calls() const;
    [[nodiscard]] int calls(const std::string& api) const;
    /// Effects, in order.
    [[nodiscard]] std::vector<Effect> effects() const;
    [[nodiscard]] std::vector<Effect> effects(const std::string& api) const;
    /// Tags each customer carries (by tag name), as mark_tag left them.
    [[nodiscard]] std::map<std::string, std::set<std::string>> customer_tags() const;
    /// The tag group/tag state (for get_corp_tag_list).
    [[nodiscard]] std::map<std::string, std::string> tag_ids_by_name() const;
    /// Highest number of calls of any API that were being served at the same time.
    [[nodiscard]] int max_concurrency() const;

private:
    std::map<std::string, std::pair<std::int64_t, bool>> response_codes_; ///< code → (expiry, used)
    FakeReply handle(const FakeRequest& req);
    FakeReply dispatch(const std::string& api, const nlohmann::json& body, const FakeRequest& req, std::int64_t now);

    mutable std::mutex mutex_;
    std::string corp_id_;
    std::string secret_;
    std::function<std::int64_t()> now_ms_;
    int token_lifetime_s_ = 7200;
    std::chrono::milliseconds latency_{0};
    std::map<std::string, std::int64_t> tokens_; ///< token → expiry (ms)
    std::set<std::string> revoked_;
    std::string current_token_;
    int token_serial_ = 0;
    std::map<std::string, std::deque<Fault>> faults_;
    std::map<std::string, FakeGroup> groups_;
    std::set<std::pair<std::string, std::string>> contacts_;
    std::map<std::string, std::int64_t> welcome_codes_; ///< code → issued (ms)
    std::set<std::string> used_codes_;
    int code_serial_ = 0;
    std::set<std::string> robots_;
    struct Tag {
        std::string id, name, group_id, group_name;
    };
    std::vector<Tag> tags_;
    int tag_serial_ = 0;
    std::map<std::string, std::set<std::string>> customer_tags_; ///< external id → tag ids
    std::map<std::string, std::int64_t> recent_messages_;        ///< message/send body → first seen (ms)
    std::map<std::pair<std::string, std::int64_t>, int> group_mass_sends_; ///< (chat, day) → tasks
    std::map<std::string, std::vector<std::string>> appchats_;
    std::set<std::string> confirmed_tasks_;
    int msg_serial_ = 0;
    std::map<std::string, int> calls_;
    std::vector<Effect> effects_;
    int in_flight_ = 0;
    int max_in_flight_ = 0;
    std::unique_ptr<TlsServer> server_;
};

} // namespace qunbot::fakes
