#include "adapters/wecom/event_parser.hpp"

#include <catch2/catch.hpp>

using qunbot::core::EventKind;
using qunbot::wecom::parse_event;
using qunbot::wecom::ParseContext;

namespace {

const ParseContext ctx{"app1", "wwcorp"};

qunbot::core::Event parse(const std::string& payload)
{
    auto e = parse_event(payload, ctx);
    REQUIRE(e.ok());
    return std::move(e).value();
}

// The official 92130 sample (notes §3.2).
const std::string chat_join_sample = R"(<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[sys]]></FromUserName>
  <CreateTime>1403610513</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[change_external_chat]]></Event>
  <ChatId><![CDATA[CHAT_ID]]></ChatId>
  <ChangeType><![CDATA[update]]></ChangeType>
  <UpdateDetail><![CDATA[add_member]]></UpdateDetail>
  <JoinScene>1</JoinScene>
  <QuitScene>0</QuitScene>
  <MemChangeCnt>10</MemChangeCnt>
  <MemChangeList><Item>Jack</Item><Item>Rose</Item></MemChangeList>
  <LastMemVer>9c3f97c2ada667dfb5f6d03308d963e1</LastMemVer>
  <CurMemVer>71217227bbd112ecfe3a49c482195cb4</CurMemVer>
</xml>)";

std::string chat_event(const std::string& change, const std::string& detail, const std::string& extra = "")
{
    return "<xml><ToUserName><![CDATA[wwcorp]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
           "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
           "<Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[wrChat1]]></ChatId>"
           "<ChangeType><![CDATA[" + change + "]]></ChangeType>" +
           (detail.empty() ? "" : "<UpdateDetail><![CDATA[" + detail + "]]></UpdateDetail>") + extra + "</xml>";
}

std::string contact_event(const std::string& change, const std::string& extra = "")
{
    return "<xml><ToUserName><![CDATA[wwcorp]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
           "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
           "<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[" + change + "]]></ChangeType>"
           "<UserID><![CDATA[zhangsan]]></UserID><ExternalUserID><![CDATA[wmCustomer]]></ExternalUserID>" + extra + "</xml>";
}

} // namespace

TEST_CASE("change_external_chat add_member: the official sample", "[wecom][events]")
{
    const auto e = parse(chat_join_sample);
    CHECK(e.kind == EventKind::member_joined);
    CHECK(e.platform == "wecom");
    CHECK(e.app == "app1");
    CHECK(e.tenant == "wwcorp");
    CHECK(e.group_id == "CHAT_ID");
    CHECK(e.time == 1403610513);
    CHECK(e.actor == "sys");
    CHECK(e.scene == 1); // a value the field table does not list: kept as an integer
    CHECK(e.members == std::vector<std::string>{"Jack", "Rose"});
    CHECK(e.member_change_count == 10);
    CHECK(e.last_member_version == "9c3f97c2ada667dfb5f6d03308d963e1");
    CHECK(e.current_member_version == "71217227bbd112ecfe3a49c482195cb4");
    CHECK(e.raw_type == "change_external_chat/update/add_member");
    CHECK(e.payload == chat_join_sample);
}

TEST_CASE("change_external_chat: every change type and update detail", "[wecom][events]")
{
    CHECK(parse(chat_event("create", "")).kind == EventKind::group_created);
    CHECK(parse(chat_event("dismiss", "")).kind == EventKind::group_dismissed);
    CHECK(parse(chat_event("update", "change_owner")).kind == EventKind::group_owner_changed);
    CHECK(parse(chat_event("update", "change_name")).kind == EventKind::group_renamed);
    CHECK(parse(chat_event("update", "change_notice")).kind == EventKind::group_notice_changed);
    const auto left = parse(chat_event("update", "del_member",
                                       "<QuitScene>1</QuitScene><MemChangeCnt>1</MemChangeCnt>"
                                       "<MemChangeList><Item>wmGone</Item></MemChangeList>"));
    CHECK(left.kind == EventKind::member_left);
    CHECK(left.scene == 1);
    CHECK(left.members == std::vector<std::string>{"wmGone"});
    const auto future = parse(chat_event("update", "change_avatar"));
    CHECK(future.kind == EventKind::unknown);
    CHECK(future.raw_type == "change_external_chat/update/change_avatar");
}

TEST_CASE("comma-joined MemChangeList variant is understood", "[wecom][events]")
{
    const auto e = parse(chat_event("update", "add_member", "<JoinScene>3</JoinScene><MemChangeList><![CDATA[a,b,c]]></MemChangeList>"));
    CHECK(e.members == std::vector<std::string>{"a", "b", "c"});
    CHECK(e.member_change_count == 3);
    CHECK(e.scene == 3);
}

TEST_CASE("dedup keys: retries collide, different changes in the same second do not", "[wecom][events][dedup]")
{
    const auto join = [](const std::string& members, const std::string& ver) {
        return chat_event("update", "add_member", "<JoinScene>0</JoinScene><MemChangeList>" + members +
                                                      "</MemChangeList><LastMemVer>v0</LastMemVer><CurMemVer>" + ver + "</CurMemVer>");
    };
    const auto a = parse(join("<Item>m1</Item>", "v1"));
    const auto a_retry = parse(join("<Item>m1</Item>", "v1"));
    const auto other_member = parse(join("<Item>m2</Item>", "v1"));
    const auto other_version = parse(join("<Item>m1</Item>", "v2"));
    CHECK(a.dedup_key == a_retry.dedup_key);
    CHECK(a.dedup_key != other_member.dedup_key);
    CHECK(a.dedup_key != other_version.dedup_key);
    // FromUserName+CreateTime, the documented key, would be equal for all of these.
    CHECK(parse(chat_event("update", "change_name")).dedup_key != parse(chat_event("update", "change_notice")).dedup_key);
}

TEST_CASE("change_external_contact: the official add_external_contact sample", "[wecom][events]")
{
    const auto e = parse(
        "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[add_external_contact]]></ChangeType>"
        "<UserID><![CDATA[zhangsan]]></UserID><ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACH71w]]></ExternalUserID>"
        "<State><![CDATA[teststate]]></State><WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode></xml>");
    CHECK(e.kind == EventKind::contact_added);
    CHECK(e.actor == "zhangsan");
    CHECK(e.subject == "woAJ2GCAAAXtWyujaWJHDDGi0mACH71w");
    CHECK(e.state == "teststate");
    CHECK(e.welcome_code == "WELCOMECODE");
    CHECK(e.group_id.empty());
}

TEST_CASE("change_external_contact: all kinds", "[wecom][events]")
{
    CHECK(parse(contact_event("add_half_external_contact", "<State><![CDATA[s]]></State>")).kind == EventKind::contact_half_added);
    CHECK(parse(contact_event("edit_external_contact")).kind == EventKind::contact_edited);
    const auto del = parse(contact_event("del_external_contact", "<Source><![CDATA[DELETE_BY_TRANSFER]]></Source>"));
    CHECK(del.kind == EventKind::contact_deleted);
    CHECK(del.attribute("source") == "DELETE_BY_TRANSFER");
    CHECK(parse(contact_event("del_follow_user")).kind == EventKind::contact_unfollowed);
    const auto fail = parse(contact_event("transfer_fail", "<FailReason><![CDATA[customer_refused]]></FailReason>"));
    CHECK(fail.kind == EventKind::contact_transfer_failed);
    CHECK(fail.attribute("fail_reason") == "customer_refused");
    CHECK(parse(contact_event("msg_audit_approved")).kind == EventKind::contact_archive_agreed);
}

TEST_CASE("change_external_tag and msgaudit_notify", "[wecom][events]")
{
    const auto tag = parse("<xml><ToUserName><![CDATA[c]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
                           "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
                           "<Event><![CDATA[change_external_tag]]></Event><Id><![CDATA[etTAG]]></Id>"
                           "<TagType><![CDATA[tag]]></TagType><ChangeType><![CDATA[shuffle]]></ChangeType>"
                           "<StrategyId>7</StrategyId></xml>");
    CHECK(tag.kind == EventKind::tag_changed);
    CHECK(tag.attribute("change_type") == "shuffle");
    CHECK(tag.attribute("id") == "etTAG");
    CHECK(tag.attribute("tag_type") == "tag");
    CHECK(tag.attribute("strategy_id") == "7");
    const auto notify = parse("<xml><ToUserName><![CDATA[c]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
                              "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
                              "<AgentID>2000004</AgentID><Event><![CDATA[msgaudit_notify]]></Event></xml>");
    CHECK(notify.kind == EventKind::archive_notify);
    CHECK(notify.attribute("agent_id") == "2000004");
}

TEST_CASE("app text message (vector A2 plaintext) and its JSON twin (vector C1)", "[wecom][events]")
{
    const auto xml = parse("<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
                           "<CreateTime>1409659813</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n"
                           "<Content><![CDATA[hello]]></Content>\n<MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>");
    CHECK(xml.kind == EventKind::message);
    CHECK(xml.message_type == "text");
    CHECK(xml.text == "hello");
    CHECK(xml.actor == "mycreate");
    CHECK(xml.message_id == "4561255354251345929"); // 64-bit: kept exact as a string
    CHECK(xml.attribute("agent_id") == "218");
    const auto json = parse(R"({"ToUserName":"wx5823bf96d3bd56c7","FromUserName":"mycreate","CreateTime": 1409659813,)"
                            R"("MsgType":"text","Content":"hello","MsgId":4561255354251345929,"AgentID": 218})");
    CHECK(json.kind == EventKind::message);
    CHECK(json.message_id == "4561255354251345929");
    CHECK(json.time == 1409659813);
    CHECK(json.dedup_key == xml.dedup_key);
}

TEST_CASE("unknown types are kept, with a key derived from the payload", "[wecom][events]")
{
    const std::string p = "<xml><ToUserName><![CDATA[c]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
                          "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
                          "<Event><![CDATA[change_contact]]></Event></xml>";
    const auto e = parse(p);
    CHECK(e.kind == EventKind::unknown);
    CHECK(e.raw_type == "event/change_contact");
    CHECK(e.payload == p);
    CHECK(e.dedup_key == "payload|" + qunbot::wecom::sha256_hex(p));
    CHECK(parse("<xml><Foo>1</Foo></xml>").kind == EventKind::unknown);
}

TEST_CASE("a payload that is not XML or JSON is an error", "[wecom][events][negative]")
{
    CHECK(parse_event("<xml><MsgType>text", ctx).error().code == "malformed_payload");
    CHECK(parse_event("<root/>", ctx).error().code == "malformed_payload");
    CHECK(parse_event("{\"MsgType\":", ctx).error().code == "malformed_payload");
    CHECK(parse_event("1616140317555161061", ctx).error().code == "malformed_payload");
}

TEST_CASE("sha256_hex matches the FIPS 180-2 'abc' vector", "[wecom]")
{
    CHECK(qunbot::wecom::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
