#include "adapters/wecom/test_event.hpp"

#include "adapters/wecom/base64.hpp"

#include <openssl/rand.h>

#include <chrono>
#include <stdexcept>

namespace qunbot::wecom {
namespace {

std::string cdata(std::string_view s)
{
    // "]]>" cannot appear inside CDATA: close and reopen around it.
    std::string out = "<![CDATA[";
    for (std::size_t pos = 0;;) {
        const auto hit = s.find("]]>", pos);
        if (hit == std::string_view::npos) {
            out.append(s.substr(pos));
            break;
        }
        out.append(s.substr(pos, hit - pos + 2));
        out += "]]><![CDATA[";
        pos = hit + 2;
    }
    return out + "]]>";
}

std::string element(std::string_view name, std::string_view text)
{
    return "<" + std::string(name) + ">" + cdata(text) + "</" + std::string(name) + ">";
}

std::string header(const TestEventSpec& s, std::int64_t t, std::string_view msg_type, std::string_view from)
{
    return "<xml>" + element("ToUserName", s.corp_id) + element("FromUserName", from) + "<CreateTime>" +
           std::to_string(t) + "</CreateTime>" + element("MsgType", msg_type);
}

std::string chat_change(const TestEventSpec& s, std::int64_t t, std::string_view change, std::string_view detail)
{
    std::string x = header(s, t, "event", "sys") + element("Event", "change_external_chat") + element("ChatId", s.chat_id) +
                    element("ChangeType", change);
    if (detail.empty()) return x + "</xml>";
    x += element("UpdateDetail", detail);
    const bool join = detail == "add_member";
    const bool quit = detail == "del_member";
    if (join) x += "<JoinScene>" + std::to_string(s.scene) + "</JoinScene>";
    if (quit) x += "<QuitScene>" + std::to_string(s.scene) + "</QuitScene>";
    if (join || quit) {
        x += "<MemChangeCnt>" + std::to_string(s.members.size()) + "</MemChangeCnt><MemChangeList>";
        for (const auto& m : s.members) x += "<Item>" + cdata(m) + "</Item>";
        const std::string ver = s.member_version.empty() ? random_alnum(32) : s.member_version;
        x += "</MemChangeList><LastMemVer>" + random_alnum(32) + "</LastMemVer><CurMemVer>" + ver + "</CurMemVer>";
    }
    return x + "</xml>";
}

} // namespace

const std::vector<std::string>& test_event_kinds()
{
    static const std::vector<std::string> kinds{"member_joined", "member_left",   "group_created", "group_dismissed",
                                                "group_renamed", "contact_added", "message",       "tag_created",
                                                "archive_notify"};
    return kinds;
}

core::Result<std::string> make_test_payload(const TestEventSpec& s)
{
    using namespace std::chrono;
    const std::int64_t t =
        s.create_time ? s.create_time : duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
    if (s.kind == "member_joined") return chat_change(s, t, "update", "add_member");
    if (s.kind == "member_left") return chat_change(s, t, "update", "del_member");
    if (s.kind == "group_created") return chat_change(s, t, "create", "");
    if (s.kind == "group_dismissed") return chat_change(s, t, "dismiss", "");
    if (s.kind == "group_renamed") return chat_change(s, t, "update", "change_name");
    if (s.kind == "contact_added") {
        return header(s, t, "event", "sys") + element("Event", "change_external_contact") +
               element("ChangeType", "add_external_contact") + element("UserID", s.user) +
               element("ExternalUserID", s.external_user) + element("State", s.state) +
               element("WelcomeCode", s.welcome_code.empty() ? random_alnum(24) : s.welcome_code) + "</xml>";
    }
    if (s.kind == "message") {
        std::string id = s.msg_id;
        if (id.empty()) {
            unsigned long long v = 0;
            RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof v);
            id = std::to_string(v >> 1);
        }
        return header(s, t, "text", s.user) + element("Content", s.text) + "<MsgId>" + id + "</MsgId><AgentID>1000002</AgentID></xml>";
    }
    if (s.kind == "tag_created") {
        return header(s, t, "event", "sys") + element("Event", "change_external_tag") + element("Id", "etTestTag" + random_alnum(8)) +
               element("TagType", "tag") + element("ChangeType", "create") + "</xml>";
    }
    if (s.kind == "archive_notify") {
        return header(s, t, "event", "sys") + "<AgentID>2000004</AgentID>" + element("Event", "msgaudit_notify") + "</xml>";
    }
    return core::make_error("unknown_kind", "unknown test event kind '" + s.kind + "'");
}

SealedCallback seal_callback(const CallbackCrypto& crypto, std::string_view payload, std::string_view timestamp,
                             std::string_view nonce, bool json)
{
    const std::string encrypted = crypto.encrypt(payload);
    SealedCallback out;
    out.query = "msg_signature=" + crypto.signature(timestamp, nonce, encrypted) + "&timestamp=" + percent_encode(timestamp) +
                "&nonce=" + percent_encode(nonce);
    if (json) {
        out.body = "{\"tousername\":\"" + crypto.receive_id() + "\",\"encrypt\":\"" + encrypted + "\",\"agentid\":\"1000002\"}";
    } else {
        out.body = "<xml>" + element("ToUserName", crypto.receive_id()) + element("AgentID", "1000002") +
                   element("Encrypt", encrypted) + "</xml>";
    }
    return out;
}

std::string seal_url_verification(const CallbackCrypto& crypto, std::string_view echo, std::string_view timestamp,
                                   std::string_view nonce)
{
    const std::string encrypted = crypto.encrypt(echo);
    return "msg_signature=" + crypto.signature(timestamp, nonce, encrypted) + "&timestamp=" + percent_encode(timestamp) +
           "&nonce=" + percent_encode(nonce) + "&echostr=" + percent_encode(encrypted);
}

std::string generate_encoding_aes_key()
{
    std::string raw(32, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), 32) != 1) throw std::runtime_error("RAND_bytes failed");
    std::string key = base64_encode(raw);
    key.pop_back(); // 44 chars with one '='; WeCom shows the 43 without it
    return key;
}

std::string generate_token() { return random_alnum(32); }

std::string percent_encode(std::string_view s)
{
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

} // namespace qunbot::wecom
