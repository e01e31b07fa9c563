#include "adapters/wecom/aibot.hpp"

#include <nlohmann/json.hpp>

namespace qunbot::wecom {

namespace {

using nlohmann::json;

std::string str(const json& j, const char* key)
{
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string nested(const json& j, const char* outer, const char* inner)
{
    auto it = j.find(outer);
    return it != j.end() && it->is_object() ? str(*it, inner) : std::string();
}

} // namespace

std::string strip_leading_mentions(std::string_view text)
{
    // WeCom puts U+2005 (four-per-em space) after a mention; people type ordinary spaces.
    static constexpr std::string_view spaces[] = {" ", "\u2005", "\u3000", "\t", "\n"};
    auto skip_space = [&](std::string_view& s) {
        for (bool again = true; again;) {
            again = false;
            for (auto sp : spaces) {
                if (s.starts_with(sp)) {
                    s.remove_prefix(sp.size());
                    again = true;
                }
            }
        }
    };
    skip_space(text);
    while (text.starts_with("@")) {
        std::size_t end = std::string_view::npos;
        for (auto sp : spaces) end = std::min(end, text.find(sp));
        if (end == std::string_view::npos) return std::string(); // only a mention
        text.remove_prefix(end);
        skip_space(text);
    }
    return std::string(text);
}

core::Result<core::Event> parse_aibot_event(std::string_view payload, const ParseContext& ctx)
{
    const auto j = json::parse(payload, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return core::make_error("malformed_payload", "AI-bot payload is not a JSON object");
    const auto msgid = str(j, "msgid");
    const auto msgtype = str(j, "msgtype");
    if (msgid.empty() || msgtype.empty()) return core::make_error("malformed_payload", "AI-bot payload without msgid or msgtype");
    core::Event e;
    e.platform = "wecom";
    e.app = ctx.app;
    e.tenant = ctx.tenant;
    e.dedup_key = "aibot:" + msgid;
    e.message_id = msgid;
    e.raw_type = "aibot/" + msgtype;
    e.payload = std::string(payload);
    const auto chattype = str(j, "chattype");
    if (chattype == "group") e.group_id = str(j, "chatid");
    e.actor = nested(j, "from", "userid");
    if (const auto url = str(j, "response_url"); !url.empty()) e.attributes.emplace_back("response_url", url);
    if (const auto bot = str(j, "aibotid"); !bot.empty()) e.attributes.emplace_back("aibotid", bot);
    if (!chattype.empty()) e.attributes.emplace_back("chattype", chattype);
    if (msgtype == "text") {
        e.kind = core::EventKind::message;
        e.message_type = "text";
        e.text = strip_leading_mentions(nested(j, "text", "content"));
    } else if (msgtype == "mixed") {
        e.kind = core::EventKind::message;
        e.message_type = "mixed";
        std::string text;
        if (auto m = j.find("mixed"); m != j.end() && m->is_object()) {
            if (auto items = m->find("msg_item"); items != m->end() && items->is_array()) {
                for (const auto& item : *items) {
                    if (!item.is_object()) continue;
                    if (str(item, "msgtype") == "text") text += nested(item, "text", "content");
                    else if (str(item, "msgtype") == "image") e.attributes.emplace_back("image_url", nested(item, "image", "url"));
                }
            }
        }
        e.text = strip_leading_mentions(text);
    } else if (msgtype == "image" || msgtype == "file" || msgtype == "voice") {
        e.kind = core::EventKind::message;
        e.message_type = msgtype;
        if (msgtype == "voice") e.text = strip_leading_mentions(nested(j, "voice", "content")); // WeCom's transcription
        else if (const auto url = nested(j, msgtype.c_str(), "url"); !url.empty()) e.attributes.emplace_back(msgtype + "_url", url);
    } else if (msgtype == "event") {
        e.kind = core::EventKind::unknown;
        const auto type = nested(j, "event", "eventtype");
        e.raw_type = "aibot/event/" + type;
        e.attributes.emplace_back("eventtype", type);
        if (e.actor.empty()) e.actor = nested(j, "from", "corpid");
    } else {
        // "stream" refreshes (we never start a stream) and types this version does not know.
        e.kind = core::EventKind::unknown;
    }
    return e;
}

} // namespace qunbot::wecom
