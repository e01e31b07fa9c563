#include "adapters/wecom/envelope.hpp"

#include <nlohmann/json.hpp>
#include <pugixml.hpp>

namespace qunbot::wecom {
namespace {

std::string_view trim_left(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\r' || s.front() == '\t')) s.remove_prefix(1);
    // A UTF-8 BOM is not expected from WeCom, but tolerate it rather than reject the event.
    if (s.starts_with("\xEF\xBB\xBF")) s.remove_prefix(3);
    return s;
}

// `numbers`: accept an integer too (agentid is a number in some samples, a string in others).
std::string json_field(const nlohmann::json& j, std::initializer_list<const char*> names, bool numbers = false)
{
    for (const char* n : names) {
        auto it = j.find(n);
        if (it == j.end()) continue;
        if (it->is_string()) return it->get<std::string>();
        if (numbers && it->is_number_integer()) return std::to_string(it->get<long long>());
    }
    return {};
}

} // namespace

core::Result<Envelope> parse_envelope(std::string_view body)
{
    const auto text = trim_left(body);
    Envelope env;
    if (text.starts_with("<")) {
        pugi::xml_document doc;
        const auto parsed = doc.load_buffer(text.data(), text.size(), pugi::parse_default, pugi::encoding_utf8);
        if (!parsed) {
            return core::make_error("malformed_body", std::string("XML body does not parse: ") + parsed.description() +
                                                          " at offset " + std::to_string(parsed.offset));
        }
        const auto root = doc.child("xml");
        if (!root) return core::make_error("malformed_body", "XML body has no <xml> root element");
        env.encrypt = root.child_value("Encrypt");
        env.to_user_name = root.child_value("ToUserName");
        env.agent_id = root.child_value("AgentID");
    } else if (text.starts_with("{")) {
        auto j = nlohmann::json::parse(text, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return core::make_error("malformed_body", "JSON body does not parse as an object");
        env.json = true;
        env.encrypt = json_field(j, {"encrypt", "Encrypt"});
        env.to_user_name = json_field(j, {"tousername", "ToUserName"});
        env.agent_id = json_field(j, {"agentid", "AgentID"}, true);
    } else {
        return core::make_error("malformed_body", "body is neither XML nor JSON");
    }
    if (env.encrypt.empty()) return core::make_error("missing_encrypt", "body has no Encrypt field");
    return env;
}

} // namespace qunbot::wecom
