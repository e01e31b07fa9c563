#include "bot/config.hpp"

#include "support/support.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <sys/stat.h>

using namespace qunbot;

TEST_CASE("the embedded default configuration is valid and serves the demo app", "[config]")
{
    auto c = bot::load_config("");
    REQUIRE(c.ok());
    CHECK(c->address == "127.0.0.1");
    CHECK(c->port == 8080);
    CHECK(c->database == "var/qunbot.db");
    REQUIRE(c->apps.size() == 1);
    CHECK(c->apps[0].name == "demo");
    CHECK(c->apps[0].generate_secrets);
    CHECK(c->wal_limit_mb == 1024);
}

TEST_CASE("every configuration problem is reported at once, with a suggestion for typos", "[config][negative]")
{
    auto c = bot::parse_config(R"({
        "listen": {"adress": "127.0.0.1", "port": 70000},
        "threads": "two",
        "http": {"max_body_bytes": 0},
        "journal": {"durability": "sometimes", "wal_limit_mb": 0},
        "apps": [{"name": "a", "path": "wecom", "corp_id": "", "secrets_file": "x"},
                 {"name": "a", "path": "/b", "corp_id": "c"}]
    })", "test.json");
    REQUIRE_FALSE(c.ok());
    const auto& m = c.error().message;
    CHECK_THAT(m, Catch::Contains("test.json: /listen: unknown key \"adress\"; did you mean \"address\"?"));
    CHECK_THAT(m, Catch::Contains("/listen/port: expected a port number"));
    CHECK_THAT(m, Catch::Contains("/threads: expected a number, got string"));
    CHECK_THAT(m, Catch::Contains("/http/max_body_bytes: expected a positive integer"));
    CHECK_THAT(m, Catch::Contains("/journal/durability"));
    CHECK_THAT(m, Catch::Contains("/journal/wal_limit_mb: expected a positive integer"));
    CHECK_THAT(m, Catch::Contains("/apps/0/path: required, and must start with '/'"));
    CHECK_THAT(m, Catch::Contains("/apps/0/corp_id: required"));
    CHECK_THAT(m, Catch::Contains("/apps/1/name: duplicate app name \"a\""));
    CHECK_THAT(m, Catch::Contains("/apps/1: give either secrets_file, or both token_env and aes_key_env"));
    CHECK_THAT(m, Catch::EndsWith("10 errors"));
}

TEST_CASE("a JSON syntax error names the line and column", "[config][negative]")
{
    auto c = bot::parse_config("{\n  \"threads\": 2,\n  \"database\" \"x\"\n}", "broken.json");
    REQUIRE_FALSE(c.ok());
    CHECK_THAT(c.error().message, Catch::Contains("broken.json") && Catch::Contains("line 3"));
}

TEST_CASE("secrets come from a file or the environment, and errors never show them", "[config][secrets]")
{
    test::TempDir dir;
    SECTION("from the environment")
    {
        ::setenv("QUNBOT_TEST_TOKEN", "tok-from-env", 1);
        ::setenv("QUNBOT_TEST_KEY", "key-from-env", 1);
        auto c = bot::parse_config(R"({"apps":[{"name":"e","path":"/e","corp_id":"c","token_env":"QUNBOT_TEST_TOKEN","aes_key_env":"QUNBOT_TEST_KEY"}]})", "t");
        REQUIRE(c.ok());
        REQUIRE(bot::resolve_secrets(*c).ok());
        CHECK(c->apps[0].token.reveal() == "tok-from-env");
        CHECK(c->apps[0].encoding_aes_key.reveal() == "key-from-env");
    }
    SECTION("a malformed secrets file is refused without echoing it")
    {
        test::write_file(dir.file("s.json"), "{\"token\": \"very-secret-token\"}");
        auto c = bot::parse_config("{\"apps\":[{\"name\":\"f\",\"path\":\"/f\",\"corp_id\":\"c\",\"secrets_file\":\"" + dir.file("s.json") + "\"}]}", "t");
        REQUIRE(c.ok());
        auto st = bot::resolve_secrets(*c);
        REQUIRE_FALSE(st.ok());
        CHECK_THAT(st.error().message, Catch::Contains("must be a JSON object with string fields"));
        CHECK_THAT(st.error().message, !Catch::Contains("very-secret-token"));
    }
    SECTION("demo secrets are generated once, readable by the owner only, and valid")
    {
        const auto file = dir.file("var/demo.secrets.json");
        auto c = bot::parse_config("{\"apps\":[{\"name\":\"d\",\"path\":\"/d\",\"corp_id\":\"c\",\"secrets_file\":\"" + file +
                                       "\",\"generate_secrets\":true}]}", "t");
        REQUIRE(c.ok());
        auto again = *c;
        REQUIRE(bot::resolve_secrets(*c).ok());
        CHECK(c->apps[0].generated);
        CHECK(c->apps[0].encoding_aes_key.reveal().size() == 43);
        CHECK(c->apps[0].token.reveal().size() == 32);
        struct stat st{};
        REQUIRE(::stat(file.c_str(), &st) == 0);
        CHECK((st.st_mode & 077) == 0);
        REQUIRE(bot::resolve_secrets(again).ok());
        CHECK_FALSE(again.apps[0].generated);
        CHECK(again.apps[0].token.reveal() == c->apps[0].token.reveal());
    }
}
