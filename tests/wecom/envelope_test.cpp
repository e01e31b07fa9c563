#include "adapters/wecom/envelope.hpp"

#include <catch2/catch.hpp>

using qunbot::wecom::parse_envelope;

TEST_CASE("XML envelope as WeCom sends it", "[wecom][envelope]")
{
    auto e = parse_envelope("<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>"
                            "<AgentID><![CDATA[218]]></AgentID><Encrypt><![CDATA[abc+/=]]></Encrypt></xml>");
    REQUIRE(e.ok());
    CHECK(e->encrypt == "abc+/=");
    CHECK(e->to_user_name == "wx5823bf96d3bd56c7");
    CHECK(e->agent_id == "218");
    CHECK_FALSE(e->json);
}

TEST_CASE("JSON envelope with either key case", "[wecom][envelope]")
{
    auto lower = parse_envelope(R"({"tousername":"wx1","encrypt":"abc","agentid":218})");
    REQUIRE(lower.ok());
    CHECK(lower->encrypt == "abc");
    CHECK(lower->agent_id == "218");
    CHECK(lower->json);
    auto upper = parse_envelope(R"({"ToUserName":"wx1","Encrypt":"xyz","AgentID":"218"})");
    REQUIRE(upper.ok());
    CHECK(upper->encrypt == "xyz");
    auto ai_bot = parse_envelope(R"(  {"encrypt": "only"})");
    REQUIRE(ai_bot.ok());
    CHECK(ai_bot->encrypt == "only");
}

TEST_CASE("malformed envelopes are specific errors", "[wecom][envelope][negative]")
{
    CHECK(parse_envelope("<xml><Encrypt>abc</Encrypt>").error().code == "malformed_body");
    CHECK(parse_envelope("<other><Encrypt>abc</Encrypt></other>").error().code == "malformed_body");
    CHECK(parse_envelope("{\"encrypt\": ").error().code == "malformed_body");
    CHECK(parse_envelope("[1,2]").error().code == "malformed_body");
    CHECK(parse_envelope("").error().code == "malformed_body");
    CHECK(parse_envelope("<xml><ToUserName>x</ToUserName></xml>").error().code == "missing_encrypt");
    CHECK(parse_envelope(R"({"encrypt": 5})").error().code == "missing_encrypt");
}
