#include "adapters/wecom/performer.hpp"

#include <boost/asio/use_awaitable.hpp>

namespace qunbot::wecom {

namespace net = boost::asio;
using net::awaitable;

std::string_view to_string(GroupKind kind) noexcept
{
    switch (kind) {
    case GroupKind::none: return "none";
    case GroupKind::customer: return "customer";
    case GroupKind::app_chat: return "app_chat";
    case GroupKind::robot: return "robot";
    }
    return "none";
}

Route route(const core::Action& a, GroupKind kind, bool is_customer)
{
    using K = core::ActionKind;
    switch (a.kind) {
    case K::post:
    case K::reply:
        switch (kind) {
        case GroupKind::customer:
            return {"externalcontact/add_msg_template", false, "mass-send task for the group owner to confirm (+ notice to the owner)"};
        case GroupKind::app_chat: return {"appchat/send", false, "appchat/send into the app's group"};
        case GroupKind::robot: return {"webhook/send", false, "group robot webhook"};
        case GroupKind::none:
            if (is_customer) return {"externalcontact/add_msg_template", false, "1:1 mass-send task for the staff member to confirm"};
            return {"message/send", true, "app message to the staff member (duplicate check on)"};
        }
        break;
    case K::send_welcome: return {"externalcontact/send_welcome_msg", true, "send_welcome_msg with the one-shot code (20 s)"};
    case K::assign_tag:
    case K::remove_tag:
        if (!is_customer) return {"", true, "local tag only (WeCom corp tags are for customers)"};
        return {"externalcontact/mark_tag", true, "mark_tag through a staff member who has the customer"};
    case K::remove_member:
        if (kind == GroupKind::app_chat) return {"appchat/update", true, "appchat/update del_user_list"};
        return {"message/send", true, "no API: template-card notice to the owner and admins to remove the member"};
    case K::recall:
        return {"message/send", true, "no API: template-card notice to the owner and admins to recall the message"};
    }
    return {"", false, "unsupported"};
}

Outcome outcome_of(const ApiError& error, bool retry_safe)
{
    Outcome o;
    o.error = error;
    if (error.kind == ApiErrorKind::unknown_outcome) {
        o.status = retry_safe ? Outcome::Status::retry : Outcome::Status::check;
    } else if (error.transient() || error.kind == ApiErrorKind::credentials) {
        // Credentials can be fixed by an admin while the action waits; attempts still run out.
        o.status = Outcome::Status::retry;
    } else {
        o.status = Outcome::Status::dead;
    }
    return o;
}

namespace {

Outcome done(std::string result)
{
    Outcome o;
    o.result = std::move(result);
    return o;
}

// Built outside the coroutines: g++ 12 rejects aggregates of string literals inside them.
ApiError owner_unknown() { return ApiError{ApiErrorKind::not_sent, 0, "group owner unknown yet", "message/send"}; }
ApiError no_new_tag()
{
    return ApiError{ApiErrorKind::bad_response, 0, "add_corp_tag did not return the new tag", "externalcontact/add_corp_tag"};
}

Json text_message(const std::string& text) { return Json{{"msgtype", "text"}, {"text", {{"content", text}}}}; }

// The owner has to act by hand: a card that says who, what, why and what to do.
Json owner_card(const core::Action& a, const Context& c)
{
    const bool remove = a.kind == core::ActionKind::remove_member;
    const std::string group = c.group_name.empty() ? a.group_id : c.group_name;
    Json rows = Json::array();
    rows.push_back({{"keyname", "群"}, {"value", group}});
    rows.push_back({{"keyname", remove ? "成员" : "消息"}, {"value", a.target}});
    rows.push_back({{"keyname", "规则"}, {"value", a.rule_id}});
    return Json{{"msgtype", "template_card"},
                {"template_card",
                 {{"card_type", "text_notice"},
                  {"main_title", {{"title", remove ? "请将成员移出客户群" : "请撤回客户群中的消息"}, {"desc", group}}},
                  {"sub_title_text", a.text.empty() ? std::string(remove ? "该成员触发了群规则。" : "该消息触发了群规则。") : a.text},
                  {"horizontal_content_list", rows},
                  {"card_action", {{"type", 1}, {"url", "https://work.weixin.qq.com/"}}}}}};
}

} // namespace

Json template_attachments(const std::string& attachments)
{
    Json out = Json::array();
    const auto items = Json::parse(attachments.empty() ? "[]" : attachments, nullptr, false);
    if (!items.is_array()) return out;
    for (const auto& it : items) {
        const auto type = it.value("type", std::string());
        if (type == "image") {
            out.push_back({{"msgtype", "image"}, {"image", {{"pic_url", it.value("url", std::string())}}}});
        } else if (type == "link") {
            Json l{{"title", it.value("title", std::string())}, {"url", it.value("url", std::string())}};
            if (it.contains("desc")) l["desc"] = it["desc"];
            if (it.contains("picurl")) l["picurl"] = it["picurl"];
            out.push_back({{"msgtype", "link"}, {"link", l}});
        } else if (type == "miniprogram") {
            out.push_back({{"msgtype", "miniprogram"},
                           {"miniprogram",
                            {{"title", it.value("title", std::string())}, {"pic_media_id", it.value("pic_media_id", std::string())},
                             {"appid", it.value("appid", std::string())}, {"page", it.value("page", std::string())}}}});
        }
    }
    return out;
}

Json single_message(const core::Action& a, bool robot, std::string& degraded)
{
    degraded.clear();
    const auto items = Json::parse(a.attachments.empty() ? "[]" : a.attachments, nullptr, false);
    std::string text = a.text;
    Json article;
    if (items.is_array()) {
        for (const auto& it : items) {
            const auto type = it.value("type", std::string());
            if (type == "link" && article.is_null()) {
                article = {{"title", it.value("title", std::string())}, {"url", it.value("url", std::string())},
                           {"description", it.value("desc", std::string())}};
                if (it.contains("picurl")) article["picurl"] = it["picurl"];
            } else if (type == "image" && article.is_null()) {
                const auto url = it.value("url", std::string());
                article = {{"title", text.empty() ? std::string("图片") : text}, {"url", url}, {"picurl", url}, {"description", ""}};
                degraded += "image sent as a news card (this API needs an uploaded media_id); ";
            } else if (type == "miniprogram") {
                text += (text.empty() ? "" : "\n") + std::string("（小程序：") + it.value("title", std::string()) + "）";
                degraded += "mini-program card named in the text (this API cannot send one); ";
            } else {
                degraded += "extra " + type + " dropped (one card per message here); ";
            }
        }
    }
    if (article.is_null()) {
        Json msg = text_message(text);
        if (robot && !a.mentions.empty()) msg["text"]["mentioned_list"] = a.mentions;
        return msg;
    }
    // One message, so a resend can never leave half of it behind: the text goes into the card.
    if (!text.empty() && article.value("title", std::string()) != text) {
        const auto desc = article.value("description", std::string());
        article["description"] = desc.empty() ? text : text + "\n" + desc;
    }
    if (!degraded.empty()) degraded.resize(degraded.size() - 2);
    return Json{{"msgtype", "news"}, {"news", {{"articles", Json::array({article})}}}};
}

namespace {

std::string find_tag(const Json& list, const std::string& name)
{
    for (const auto& g : list.value("tag_group", Json::array())) {
        for (const auto& t : g.value("tag", Json::array())) {
            if (t.value("name", std::string()) == name && !t.value("deleted", false)) return t.value("id", std::string());
        }
    }
    return {};
}

} // namespace

awaitable<ApiResult<std::string>> resolve_tag(ApiClient& api, std::string name, bool create)
{
    auto list = co_await get_corp_tag_list(api);
    if (!list) co_return list.error();
    if (auto id = find_tag(*list, name); !id.empty() || !create) co_return id;
    std::string group_name = "qunbot";
    std::vector<std::string> names{name};
    auto made = co_await add_corp_tag(api, std::move(group_name), std::move(names));
    if (!made) {
        // Another call may have created the same tag a moment ago (two members tagged at once):
        // the name then exists, and its id is what we need.
        auto again = co_await get_corp_tag_list(api);
        if (again) {
            if (auto id = find_tag(*again, name); !id.empty()) co_return id;
        }
        co_return made.error();
    }
    for (const auto& t : (*made)["tag_group"].value("tag", Json::array())) {
        if (t.value("name", std::string()) == name) co_return t.value("id", std::string());
    }
    co_return no_new_tag();
}

awaitable<Outcome> perform(ApiClient& api, core::Action a, Context c)
{
    using K = core::ActionKind;
    const auto r = route(a, c.kind, c.is_customer);
    auto fail = [&r](const ApiError& e) { return outcome_of(e, r.retry_safe); };
    switch (a.kind) {
    case K::post:
    case K::reply: {
        std::string degraded;
        const auto note = [&degraded] { return degraded.empty() ? std::string() : " (degraded: " + degraded + ")"; };
        if (c.kind == GroupKind::app_chat) {
            Json msg = single_message(a, false, degraded);
            auto res = co_await appchat_send(api, a.group_id, std::move(msg));
            if (!res) co_return fail(res.error());
            co_return done("appchat/send to " + a.group_id + note());
        }
        if (c.kind == GroupKind::robot) {
            Json msg = single_message(a, true, degraded);
            auto res = co_await api.webhook(c.robot_key, msg);
            if (!res) co_return fail(res.error());
            co_return done("webhook/send to the robot of " + a.group_id + note());
        }
        if (c.kind == GroupKind::customer) {
            Outcome o;
            o.status = Outcome::Status::dead;
            o.result = "posts to customer groups go through perform_mass_send";
            co_return o;
        }
        if (c.is_customer) {
            if (c.staff.empty()) {
                Outcome o;
                o.status = Outcome::Status::dead;
                o.result = "no staff member has " + a.target + " as a contact, so nobody can send it";
                co_return o;
            }
            std::vector<std::string> to{a.target}; // a local: g++ 12 cannot keep braced lists across co_await
            Json attachments = template_attachments(a.attachments);
            auto res = co_await add_single_msg_template(api, c.staff, std::move(to), a.text, std::move(attachments));
            if (!res) co_return fail(res.error());
            co_return done("1:1 mass-send task " + res->value("msgid", std::string()) + " for " + c.staff + " to confirm");
        }
        std::vector<std::string> to{a.target};
        Json msg = single_message(a, false, degraded);
        auto res = co_await message_send(api, std::move(to), std::move(msg), c.duplicate_check_s);
        if (!res) co_return fail(res.error());
        if (const auto invalid = res->value("invaliduser", std::string()); !invalid.empty()) {
            Outcome o;
            o.status = Outcome::Status::dead;
            o.result = "message/send: recipient not valid for this app: " + invalid;
            co_return o;
        }
        co_return done("message/send to " + a.target + " (" + res->value("msgid", std::string()) + ")" + note());
    }
    case K::send_welcome: {
        auto res = co_await send_welcome_msg(api, a.welcome_code, a.text);
        if (!res) {
            // 41051 after an attempt whose answer we lost means our own earlier call used the
            // code: the customer was welcomed.
            if (res.error().errcode == 41051 && c.attempts > 1) {
                co_return done(std::string("welcome code already used (41051): an earlier attempt whose answer was lost, or another app"));
            }
            co_return fail(res.error());
        }
        co_return done("send_welcome_msg to " + a.target);
    }
    case K::assign_tag:
    case K::remove_tag: {
        if (!c.is_customer) co_return done(r.how);
        const bool add = a.kind == K::assign_tag;
        Outcome o;
        std::string tag_id = c.tag_id;
        if (tag_id.empty()) {
            auto id = co_await resolve_tag(api, a.text, add);
            if (!id) co_return fail(id.error());
            if (id->empty()) co_return done("tag " + a.text + " does not exist on WeCom: nothing to remove");
            tag_id = *id;
            o.learned_tag_id = tag_id;
        }
        if (c.staff.empty()) {
            o.status = Outcome::Status::dead;
            o.result = "no staff member has " + a.target + " as a contact (mark_tag needs one)";
            co_return o;
        }
        std::vector<std::string> ids{tag_id};
        std::vector<std::string> add_ids = add ? ids : std::vector<std::string>{};
        std::vector<std::string> remove_ids = add ? std::vector<std::string>{} : ids;
        auto res = co_await mark_tag(api, c.staff, a.target, std::move(add_ids), std::move(remove_ids));
        if (!res) {
            auto f = fail(res.error());
            f.learned_tag_id = o.learned_tag_id;
            co_return f;
        }
        o.result = std::string("mark_tag ") + (add ? "+" : "-") + a.text + " (" + tag_id + ") on " + a.target + " via " + c.staff;
        co_return o;
    }
    case K::remove_member:
    case K::recall: {
        if (a.kind == K::remove_member && c.kind == GroupKind::app_chat) {
            std::vector<std::string> gone{a.target};
            std::vector<std::string> added;
            auto res = co_await appchat_update(api, a.group_id, std::move(added), std::move(gone));
            if (!res) co_return fail(res.error());
            co_return done("appchat/update removed " + a.target + " from " + a.group_id);
        }
        std::vector<std::string> to;
        if (!c.owner.empty()) to.push_back(c.owner);
        for (const auto& ad : c.admins) {
            if (ad != c.owner) to.push_back(ad);
        }
        if (to.empty()) {
            Outcome o;
            o.status = Outcome::Status::retry; // the directory sync will learn the owner
            o.error = owner_unknown();
            co_return o;
        }
        Json card = owner_card(a, c);
        auto res = co_await message_send(api, to, std::move(card), c.duplicate_check_s);
        if (!res) co_return fail(res.error());
        std::string who;
        for (const auto& t : to) who += (who.empty() ? "" : ",") + t;
        co_return done("degraded (no WeCom API): notice card to " + who);
    }
    }
    co_return done(std::string("nothing to do"));
}

awaitable<Outcome> perform_mass_send(ApiClient& api, std::string tenant, std::string app, std::string sender,
                                     std::vector<std::string> groups, std::string text, std::string attachments)
{
    Json items = template_attachments(attachments);
    auto res = co_await add_group_msg_template(api, sender, groups, text, std::move(items));
    if (!res) co_return outcome_of(res.error(), false);
    const auto msgid = res->value("msgid", std::string());
    Outcome o;
    o.task_id = msgid;
    o.task_sender = sender;
    o.result = "mass-send task " + msgid + " for " + sender + " (" + std::to_string(groups.size()) + " group(s)), awaiting the owner's confirmation";
    core::Action notice;
    notice.kind = core::ActionKind::reply;
    notice.idempotency_key = tenant + "/mass-send-notice/" + msgid;
    notice.rule_id = "qunbot:mass-send-notice";
    notice.tenant = std::move(tenant);
    notice.platform = "wecom";
    notice.app = std::move(app);
    notice.target = sender;
    std::string excerpt = text;
    if (excerpt.size() > 120) {
        std::size_t cut = 120;
        while (cut > 0 && (static_cast<unsigned char>(excerpt[cut]) & 0xC0) == 0x80) --cut; // whole UTF-8 characters only
        excerpt = excerpt.substr(0, cut) + "…";
    }
    notice.text = "qunbot 已为你创建客户群群发任务（" + std::to_string(groups.size()) +
                  " 个群），请在企业微信「客户联系 → 群发助手」中确认发送。\n内容：" + excerpt;
    o.follow_ups.push_back(std::move(notice));
    co_return o;
}

} // namespace qunbot::wecom
