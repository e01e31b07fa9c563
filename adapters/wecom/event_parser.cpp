#include "adapters/wecom/event_parser.hpp"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <pugixml.hpp>

#include <charconv>
#include <optional>

namespace qunbot::wecom {
namespace {

using core::EventKind;

// The two payload syntaxes behind one accessor, so the mapping below is written once.
class Fields {
public:
    virtual ~Fields() = default;
    [[nodiscard]] virtual std::string get(const char* name) const = 0;
    [[nodiscard]] virtual std::vector<std::string> list(const char* name) const = 0;
};

class XmlFields final : public Fields {
public:
    explicit XmlFields(pugi::xml_node root) : root_(root) {}
    std::string get(const char* name) const override { return root_.child_value(name); }
    std::vector<std::string> list(const char* name) const override
    {
        std::vector<std::string> out;
        const auto node = root_.child(name);
        for (auto item : node.children("Item")) out.emplace_back(item.child_value());
        // A variant seen in third-party tests is a comma-joined CDATA (notes §3.2).
        if (out.empty()) split_into(node.child_value(), out);
        return out;
    }
    static void split_into(std::string_view s, std::vector<std::string>& out)
    {
        while (!s.empty()) {
            const auto comma = s.find(',');
            auto part = s.substr(0, comma);
            if (!part.empty()) out.emplace_back(part);
            if (comma == std::string_view::npos) break;
            s.remove_prefix(comma + 1);
        }
    }

private:
    pugi::xml_node root_;
};

class JsonFields final : public Fields {
public:
    explicit JsonFields(const nlohmann::json& j) : j_(j) {}
    std::string get(const char* name) const override
    {
        auto it = j_.find(name);
        if (it == j_.end()) return {};
        if (it->is_string()) return it->get<std::string>();
        if (it->is_number_unsigned()) return std::to_string(it->get<unsigned long long>());
        if (it->is_number_integer()) return std::to_string(it->get<long long>());
        return {};
    }
    std::vector<std::string> list(const char* name) const override
    {
        std::vector<std::string> out;
        auto it = j_.find(name);
        if (it == j_.end()) return out;
        const nlohmann::json* arr = &*it;
        if (it->is_object() && it->contains("Item")) arr = &(*it)["Item"];
        if (arr->is_array()) {
            for (const auto& v : *arr)
                if (v.is_string()) out.push_back(v.get<std::string>());
        } else if (arr->is_string()) {
            XmlFields::split_into(arr->get<std::string>(), out);
        }
        return out;
    }

private:
    const nlohmann::json& j_;
};

std::optional<int> to_int(const std::string& s)
{
    int v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

std::int64_t to_int64(const std::string& s)
{
    std::int64_t v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
}

void add_attr(core::Event& e, const char* name, std::string value)
{
    if (!value.empty()) e.attributes.emplace_back(name, std::move(value));
}

std::string join_key(std::initializer_list<std::string_view> parts)
{
    std::string key;
    for (auto p : parts) {
        if (!key.empty()) key += '|';
        key.append(p);
    }
    return key;
}

void map_external_chat(const Fields& f, core::Event& e)
{
    const auto change = f.get("ChangeType");
    const auto detail = f.get("UpdateDetail");
    e.group_id = f.get("ChatId");
    e.raw_type = "change_external_chat/" + change + (detail.empty() ? "" : "/" + detail);
    if (change == "create") e.kind = EventKind::group_created;
    else if (change == "dismiss") e.kind = EventKind::group_dismissed;
    else if (change == "update") {
        if (detail == "add_member") e.kind = EventKind::member_joined;
        else if (detail == "del_member") e.kind = EventKind::member_left;
        else if (detail == "change_owner") e.kind = EventKind::group_owner_changed;
        else if (detail == "change_name") e.kind = EventKind::group_renamed;
        else if (detail == "change_notice") e.kind = EventKind::group_notice_changed;
    }
    if (e.kind == EventKind::member_joined) e.scene = to_int(f.get("JoinScene"));
    if (e.kind == EventKind::member_left) e.scene = to_int(f.get("QuitScene"));
    e.members = f.list("MemChangeList");
    e.member_change_count = to_int(f.get("MemChangeCnt")).value_or(static_cast<int>(e.members.size()));
    e.last_member_version = f.get("LastMemVer");
    e.current_member_version = f.get("CurMemVer");
    // CreateTime has 1 s resolution and FromUserName is "sys", so the documented
    // FromUserName+CreateTime key collides for two changes in one second. The member versions and
    // the member list tell such changes apart; retries carry the same values.
    std::string members_digest;
    if (!e.members.empty()) {
        std::string joined;
        for (const auto& m : e.members) joined += m + '\n';
        members_digest = sha256_hex(joined).substr(0, 16);
    }
    e.dedup_key = join_key({"chat", e.group_id, change, detail, std::to_string(e.time), e.last_member_version,
                            e.current_member_version, members_digest});
}

void map_external_contact(const Fields& f, core::Event& e)
{
    const auto change = f.get("ChangeType");
    e.raw_type = "change_external_contact/" + change;
    e.actor = f.get("UserID");
    e.subject = f.get("ExternalUserID");
    e.state = f.get("State");
    e.welcome_code = f.get("WelcomeCode");
    add_attr(e, "source", f.get("Source"));
    add_attr(e, "fail_reason", f.get("FailReason"));
    if (change == "add_external_contact") e.kind = EventKind::contact_added;
    else if (change == "add_half_external_contact") e.kind = EventKind::contact_half_added;
    else if (change == "edit_external_contact") e.kind = EventKind::contact_edited;
    else if (change == "del_external_contact") e.kind = EventKind::contact_deleted;
    else if (change == "del_follow_user") e.kind = EventKind::contact_unfollowed;
    else if (change == "transfer_fail") e.kind = EventKind::contact_transfer_failed;
    else if (change == "msg_audit_approved") e.kind = EventKind::contact_archive_agreed;
    e.dedup_key = join_key({"contact", change, e.actor, e.subject, std::to_string(e.time), e.welcome_code});
}

void map_external_tag(const Fields& f, core::Event& e)
{
    const auto change = f.get("ChangeType");
    e.kind = EventKind::tag_changed;
    e.raw_type = "change_external_tag/" + change;
    add_attr(e, "change_type", change);
    add_attr(e, "id", f.get("Id"));
    add_attr(e, "tag_type", f.get("TagType"));
    add_attr(e, "strategy_id", f.get("StrategyId"));
    e.dedup_key = join_key({"tag", change, f.get("TagType"), f.get("Id"), f.get("StrategyId"), std::to_string(e.time)});
}

void map_fields(const Fields& f, std::string_view payload, core::Event& e)
{
    e.time = to_int64(f.get("CreateTime"));
    const auto msg_type = f.get("MsgType");
    const auto event = f.get("Event");
    add_attr(e, "agent_id", f.get("AgentID"));
    if (e.actor.empty()) e.actor = f.get("FromUserName");

    if (msg_type == "event") {
        if (event == "change_external_chat") return map_external_chat(f, e);
        if (event == "change_external_contact") return map_external_contact(f, e);
        if (event == "change_external_tag") return map_external_tag(f, e);
        if (event == "msgaudit_notify") {
            e.kind = EventKind::archive_notify;
            e.raw_type = "msgaudit_notify";
            e.dedup_key = join_key({"msgaudit_notify", f.get("AgentID"), std::to_string(e.time)});
            return;
        }
        e.raw_type = "event/" + event;
    } else if (!msg_type.empty()) {
        e.kind = EventKind::message;
        e.raw_type = msg_type;
        e.message_type = msg_type;
        e.message_id = f.get("MsgId");
        e.text = f.get("Content");
        if (!e.message_id.empty()) {
            e.dedup_key = join_key({"msg", e.message_id});
            return;
        }
    }
    // No natural key: the payload itself identifies the delivery (a retry carries the same payload).
    e.dedup_key = join_key({"payload", sha256_hex(payload)});
}

} // namespace

std::string sha256_hex(std::string_view data)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(len * 2);
    for (unsigned i = 0; i < len; ++i) {
        out += hex[digest[i] >> 4];
        out += hex[digest[i] & 15];
    }
    return out;
}

core::Result<core::Event> parse_event(std::string_view payload, const ParseContext& ctx)
{
    core::Event e;
    e.platform = "wecom";
    e.app = ctx.app;
    e.tenant = ctx.tenant;
    e.payload = std::string(payload);

    std::string_view text = payload;
    while (!text.empty() && (text.front() == ' ' || text.front() == '\n' || text.front() == '\r' || text.front() == '\t'))
        text.remove_prefix(1);
    if (text.starts_with("<")) {
        pugi::xml_document doc;
        const auto parsed = doc.load_buffer(text.data(), text.size(), pugi::parse_default, pugi::encoding_utf8);
        if (!parsed) {
            return core::make_error("malformed_payload",
                                    std::string("decrypted XML does not parse: ") + parsed.description() + " at offset " +
                                        std::to_string(parsed.offset));
        }
        const auto root = doc.child("xml");
        if (!root) return core::make_error("malformed_payload", "decrypted XML has no <xml> root element");
        map_fields(XmlFields(root), payload, e);
    } else if (text.starts_with("{")) {
        const auto j = nlohmann::json::parse(text, nullptr, false);
        if (j.is_discarded() || !j.is_object()) {
            return core::make_error("malformed_payload", "decrypted JSON does not parse as an object");
        }
        map_fields(JsonFields(j), payload, e);
    } else {
        return core::make_error("malformed_payload", "decrypted payload is neither XML nor JSON");
    }
    return e;
}

} // namespace qunbot::wecom
