#include "fakes/fake_wecom.hpp"

#include <algorithm>

namespace qunbot::fakes {

std::string openid_of(const std::string& member) { return "oOPENID_" + member; }

using nlohmann::json;

namespace {

FakeReply ok(json body)
{
    body["errcode"] = 0;
    body["errmsg"] = "ok";
    return FakeReply{200, body.dump()};
}

FakeReply err(int errcode, const std::string& msg)
{
    return FakeReply{200, json{{"errcode", errcode}, {"errmsg", msg}}.dump()};
}

std::int64_t real_now_ms()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::vector<std::string> strings(const json& j, const char* key)
{
    std::vector<std::string> out;
    if (j.contains(key) && j[key].is_array()) {
        for (const auto& v : j[key]) {
            if (v.is_string()) out.push_back(v.get<std::string>());
        }
    }
    return out;
}

} // namespace

FakeWeCom::FakeWeCom(std::string corp_id, std::string secret, const TestPki& pki)
    : corp_id_(std::move(corp_id)), secret_(std::move(secret)), now_ms_(real_now_ms)
{
    server_ = std::make_unique<TlsServer>(pki, [this](const FakeRequest& r) { return handle(r); });
}

FakeWeCom::~FakeWeCom() { server_.reset(); }

std::string FakeWeCom::base_url() const { return "https://127.0.0.1:" + std::to_string(server_->port()); }

void FakeWeCom::set_clock(std::function<std::int64_t()> now_ms)
{
    std::lock_guard lock(mutex_);
    now_ms_ = std::move(now_ms);
}

void FakeWeCom::set_token_lifetime(int seconds)
{
    std::lock_guard lock(mutex_);
    token_lifetime_s_ = seconds;
}

void FakeWeCom::set_latency(std::chrono::milliseconds latency)
{
    std::lock_guard lock(mutex_);
    latency_ = latency;
}

void FakeWeCom::revoke_tokens()
{
    std::lock_guard lock(mutex_);
    for (const auto& [t, e] : tokens_) revoked_.insert(t);
    current_token_.clear();
}

void FakeWeCom::fail(const std::string& api, Fault fault, int count)
{
    std::lock_guard lock(mutex_);
    for (int i = 0; i < count; ++i) faults_[api].push_back(fault);
}

void FakeWeCom::add_group(FakeGroup group)
{
    std::lock_guard lock(mutex_);
    groups_[group.chat_id] = std::move(group);
}

void FakeWeCom::add_contact(const std::string& userid, const std::string& external_userid)
{
    std::lock_guard lock(mutex_);
    contacts_.emplace(userid, external_userid);
}

std::string FakeWeCom::issue_welcome_code()
{
    std::lock_guard lock(mutex_);
    auto code = "WELCOMECODE" + std::to_string(++code_serial_);
    welcome_codes_[code] = now_ms_();
    return code;
}

void FakeWeCom::confirm_task(const std::string& msgid)
{
    std::lock_guard lock(mutex_);
    confirmed_tasks_.insert(msgid);
}

void FakeWeCom::add_appchat(const std::string& chat_id, const std::vector<std::string>& users)
{
    std::lock_guard lock(mutex_);
    appchats_[chat_id] = users;
}

void FakeWeCom::add_robot(const std::string& key)
{
    std::lock_guard lock(mutex_);
    robots_.insert(key);
}

void FakeWeCom::add_tag_group(const std::string& group_name, const std::vector<std::string>& tags)
{
    std::lock_guard lock(mutex_);
    const auto gid = "etGROUP" + std::to_string(++tag_serial_);
    for (const auto& t : tags) tags_.push_back(Tag{"etTAG" + std::to_string(++tag_serial_), t, gid, group_name});
}

std::map<std::string, int> FakeWeCom::calls() const
{
    std::lock_guard lock(mutex_);
    return calls_;
}

int FakeWeCom::calls(const std::string& api) const
{
    std::lock_guard lock(mutex_);
    auto it = calls_.find(api);
    return it == calls_.end() ? 0 : it->second;
}

std::vector<Effect> FakeWeCom::effects() const
{
    std::lock_guard lock(mutex_);
    return effects_;
}

std::vector<Effect> FakeWeCom::effects(const std::string& api) const
{
    std::lock_guard lock(mutex_);
    std::vector<Effect> out;
    for (const auto& e : effects_) {
        if (e.api == api) out.push_back(e);
    }
    return out;
}

std::map<std::string, std::set<std::string>> FakeWeCom::customer_tags() const
{
    std::lock_guard lock(mutex_);
    std::map<std::string, std::set<std::string>> out;
    for (const auto& [customer, ids] : customer_tags_) {
        for (const auto& id : ids) {
            for (const auto& t : tags_) {
                if (t.id == id) out[customer].insert(t.name);
            }
        }
    }
    return out;
}

std::map<std::string, std::string> FakeWeCom::tag_ids_by_name() const
{
    std::lock_guard lock(mutex_);
    std::map<std::string, std::string> out;
    for (const auto& t : tags_) out[t.name] = t.id;
    return out;
}

int FakeWeCom::max_concurrency() const
{
    std::lock_guard lock(mutex_);
    return max_in_flight_;
}

std::string FakeWeCom::issue_response_url()
{
    std::lock_guard lock(mutex_);
    const auto code = "RC" + std::to_string(++msg_serial_) + std::string(20, 'r');
    response_codes_[code] = {now_ms_() + 3'600'000, false};
    return base_url() + "/cgi-bin/aibot/response?response_code=" + code;
}

FakeReply FakeWeCom::handle(const FakeRequest& req)
{
    const std::string prefix = "/cgi-bin/";
    if (req.path.rfind(prefix, 0) != 0) return FakeReply{404, "not found", "text/plain"};
    const std::string api = req.path.substr(prefix.size());
    std::unique_lock lock(mutex_);
    ++calls_[api];
    const auto now = now_ms_();
    std::optional<Fault> fault;
    if (auto it = faults_.find(api); it != faults_.end() && !it->second.empty()) {
        fault = it->second.front();
        it->second.pop_front();
    }
    if (fault && fault->before_acting && (fault->errcode != 0 || fault->http_status != 0)) {
        if (fault->http_status != 0) return FakeReply{fault->http_status, "<html>bad gateway</html>", "text/html"};
        return err(fault->errcode, "scripted fault");
    }
    ++in_flight_;
    max_in_flight_ = std::max(max_in_flight_, in_flight_);
    json body = json::object();
    if (req.method == "POST") {
        body = json::parse(req.body, nullptr, false);
        if (body.is_discarded() || !body.is_object()) {
            --in_flight_;
            return err(47001, "data format error");
        }
    }
    FakeReply reply = dispatch(api, body, req, now);
    reply.delay = latency_;
    --in_flight_;
    if (fault) {
        // The server acted; the client will not learn it in time (or at all).
        if (fault->errcode != 0) reply = err(fault->errcode, "scripted fault after acting");
        if (fault->http_status != 0) reply = FakeReply{fault->http_status, "<html>error</html>", "text/html"};
        reply.delay = std::max(reply.delay, fault->delay);
        reply.drop = fault->drop;
    }
    return reply;
}

FakeReply FakeWeCom::dispatch(const std::string& api, const json& body, const FakeRequest& req, std::int64_t now)
{
    if (api == "gettoken") {
        if (req.param("corpid") != corp_id_) return err(40013, "invalid corpid");
        if (req.param("corpsecret") != secret_) return err(40001, "invalid credential");
        // Within its validity the same token comes back (notes §4.1).
        if (!current_token_.empty() && tokens_[current_token_] > now) {
            return ok({{"access_token", current_token_}, {"expires_in", (tokens_[current_token_] - now) / 1000}});
        }
        current_token_ = "TOKEN" + std::to_string(++token_serial_) + std::string(40, 'x');
        tokens_[current_token_] = now + token_lifetime_s_ * 1000LL;
        return ok({{"access_token", current_token_}, {"expires_in", token_lifetime_s_}});
    }
    if (api == "webhook/send") {
        if (!robots_.contains(req.param("key"))) return err(93000, "invalid webhook url");
        effects_.push_back({api, body});
        return ok(json::object());
    }
    if (api == "aibot/response") {
        // The URL itself is the credential: one use, one hour.
        auto it = response_codes_.find(req.param("response_code"));
        if (it == response_codes_.end() || it->second.second || it->second.first <= now) {
            return err(95000, "response_code invalid, used or expired (fake)");
        }
        it->second.second = true;
        effects_.push_back({api, body});
        return ok(json::object());
    }
    const auto token = req.param("access_token");
    if (token.empty()) return err(41001, "access_token missing");
    auto t = tokens_.find(token);
    if (t == tokens_.end() || revoked_.contains(token)) return err(40014, "invalid access_token");
    if (t->second <= now) return err(42001, "access_token expired");

    if (api == "externalcontact/groupchat/list") {
        json list = json::array();
        const auto cursor = body.value("cursor", std::string());
        const int limit = body.value("limit", 100);
        std::string next;
        int n = 0;
        for (auto it = cursor.empty() ? groups_.begin() : groups_.upper_bound(cursor); it != groups_.end(); ++it) {
            if (n == limit) {
                next = std::prev(it)->first;
                break;
            }
            list.push_back({{"chat_id", it->first}, {"status", 0}});
            ++n;
        }
        return ok({{"group_chat_list", list}, {"next_cursor", next}});
    }
    if (api == "externalcontact/groupchat/get") {
        auto g = groups_.find(body.value("chat_id", std::string()));
        if (g == groups_.end()) return err(40050, "chatid不存在");
        json members = json::array();
        for (const auto& m : g->second.members) {
            members.push_back({{"userid", m.userid}, {"type", m.type}, {"join_time", m.join_time}, {"join_scene", m.join_scene},
                               {"name", m.name}});
        }
        json admins = json::array();
        for (const auto& a : g->second.admins) admins.push_back({{"userid", a}});
        return ok({{"group_chat",
                    {{"chat_id", g->first}, {"name", g->second.name}, {"owner", g->second.owner}, {"create_time", 1700000000},
                     {"member_list", members}, {"admin_list", admins}}}});
    }
    if (api == "externalcontact/add_msg_template") {
        const auto type = body.value("chat_type", std::string("single"));
        const auto sender = body.value("sender", std::string());
        if (type == "group") {
            if (sender.empty()) return err(40003, "invalid sender");
            const auto chats = strings(body, "chat_id_list");
            if (chats.empty() || chats.size() > 2000) return err(41048, "no customer can receive");
            const std::int64_t day = (now + 8 * 3600 * 1000LL) / 86400000;
            for (const auto& c : chats) ++group_mass_sends_[{c, day}];
        }
        effects_.push_back({api, body});
        return ok({{"fail_list", json::array()}, {"msgid", "msgGROUPTASK" + std::to_string(++msg_serial_)}});
    }
    if (api == "externalcontact/get_groupmsg_send_result") {
        const auto msgid = body.value("msgid", std::string());
        json list = json::array();
        int serial = 0;
        for (const auto& e : effects_) {
            if (e.api != "externalcontact/add_msg_template") continue;
            if ("msgGROUPTASK" + std::to_string(++serial) != msgid) continue;
            for (const auto& c : strings(e.body, "chat_id_list")) {
                const bool sent = confirmed_tasks_.contains(msgid);
                list.push_back({{"chat_id", c}, {"userid", e.body.value("sender", "")}, {"status", sent ? 1 : 0},
                                {"send_time", sent ? now / 1000 : 0}});
            }
        }
        if (list.empty()) return err(41047, "invalid msgid");
        return ok({{"send_list", list}, {"next_cursor", ""}});
    }
    if (api == "externalcontact/send_welcome_msg") {
        const auto code = body.value("welcome_code", std::string());
        auto c = welcome_codes_.find(code);
        if (c == welcome_codes_.end() || now - c->second > 20'000) return err(41050, "invalid welcome_code");
        if (!used_codes_.insert(code).second) return err(41051, "customer already begin chatting");
        effects_.push_back({api, body});
        return ok(json::object());
    }
    if (api.rfind("externalcontact/group_welcome_template/", 0) == 0) {
        const auto op = api.substr(api.rfind('/') + 1);
        if (op == "add") {
            effects_.push_back({api, body});
            return ok({{"template_id", "msgWELCOME" + std::to_string(++msg_serial_)}});
        }
        effects_.push_back({api, body});
        if (op == "get") return ok({{"text", {{"content", "template"}}}});
        return ok(json::object());
    }
    if (api == "externalcontact/get_corp_tag_list") {
        std::map<std::string, json> groups;
        for (const auto& tg : tags_) {
            auto& g = groups[tg.group_id];
            if (g.is_null()) g = {{"group_id", tg.group_id}, {"group_name", tg.group_name}, {"tag", json::array()}};
            g["tag"].push_back({{"id", tg.id}, {"name", tg.name}, {"deleted", false}});
        }
        json list = json::array();
        for (auto& [id, g] : groups) list.push_back(g);
        return ok({{"tag_group", list}});
    }
    if (api == "externalcontact/add_corp_tag") {
        const auto group_name = body.value("group_name", std::string());
        std::string gid;
        for (const auto& tg : tags_) {
            if (tg.group_name == group_name) gid = tg.group_id;
        }
        if (gid.empty()) gid = "etGROUP" + std::to_string(++tag_serial_);
        json out = json::array();
        for (const auto& t : body.value("tag", json::array())) {
            const auto name = t.value("name", std::string());
            for (const auto& tg : tags_) {
                if (tg.name == name && tg.group_id == gid) return err(40071, "标签名字已经存在");
            }
            tags_.push_back(Tag{"etTAG" + std::to_string(++tag_serial_), name, gid, group_name});
            out.push_back({{"id", tags_.back().id}, {"name", name}});
        }
        effects_.push_back({api, body});
        return ok({{"tag_group", {{"group_id", gid}, {"group_name", group_name}, {"tag", out}}}});
    }
    if (api == "externalcontact/mark_tag") {
        const auto user = body.value("userid", std::string());
        const auto customer = body.value("external_userid", std::string());
        const auto add = strings(body, "add_tag");
        const auto remove = strings(body, "remove_tag");
        if (add.empty() && remove.empty()) return err(40068, "invalid tagid");
        if (!contacts_.contains({user, customer})) return err(84061, "not external contact");
        for (const auto& id : add) {
            if (std::none_of(tags_.begin(), tags_.end(), [&](const Tag& t) { return t.id == id; })) return err(40068, "invalid tagid");
        }
        for (const auto& id : add) customer_tags_[customer].insert(id);
        for (const auto& id : remove) customer_tags_[customer].erase(id);
        effects_.push_back({api, body});
        return ok(json::object());
    }
    if (api == "message/send") {
        // Duplicate check (notes §4.7): an identical request inside the interval is accepted
        // and dropped.
        if (body.value("enable_duplicate_check", 0) == 1) {
            const auto key = body.dump();
            const std::int64_t window = body.value("duplicate_check_interval", 1800) * 1000LL;
            auto it = recent_messages_.find(key);
            if (it != recent_messages_.end() && now - it->second < window) return ok({{"msgid", "duplicate"}});
            recent_messages_[key] = now;
        }
        effects_.push_back({api, body});
        return ok({{"invaliduser", ""}, {"msgid", "msgAPP" + std::to_string(++msg_serial_)}});
    }
    if (api == "externalcontact/convert_to_openid" || api == "user/convert_to_openid") {
        const auto id = body.value(api == "user/convert_to_openid" ? "userid" : "external_userid", std::string());
        // Only WeChat customers (wm…) have a WeChat openid (notes §6); wo… are WeCom users.
        if (id.empty() || (api != "user/convert_to_openid" && !id.starts_with("wm"))) return err(40096, "invalid external userid");
        return ok({{"openid", openid_of(id)}});
    }
    if (api == "appchat/create") {
        auto id = body.value("chatid", std::string());
        if (id.empty()) id = "APPCHAT" + std::to_string(++msg_serial_);
        if (appchats_.contains(id)) return err(86215, "chatid exists");
        appchats_[id] = strings(body, "userlist");
        effects_.push_back({api, body});
        return ok({{"chatid", id}});
    }
    if (api == "appchat/send" || api == "appchat/update") {
        auto c = appchats_.find(body.value("chatid", std::string()));
        if (c == appchats_.end()) return err(86001, "invalid chatid");
        if (api == "appchat/update") {
            for (const auto& u : strings(body, "del_user_list")) std::erase(c->second, u);
            for (const auto& u : strings(body, "add_user_list")) c->second.push_back(u);
        }
        effects_.push_back({api, body});
        return ok(json::object());
    }
    return err(404, "unknown api in fake: " + api);
}

} // namespace qunbot::fakes
