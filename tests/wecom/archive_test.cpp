// The session archive: the GetChatData answer, the RSA step with a test key pair (random keys
// really RSA-encrypted, PKCS#1 v1.5), every message type's mapping, the SDK loaded with dlopen
// (a fake with the official C ABI, built by the test suite), chunked media, a missing key
// version stopping the pull without skipping, and a SIGKILL of the real process mid-pull after
// which every message is stored exactly once.
#include "adapters/wecom/archive_message.hpp"
#include "adapters/wecom/base64.hpp"
#include "adapters/wecom/callback_crypto.hpp"
#include "adapters/wecom/test_event.hpp"
#include "adapters/wecom/finance_sdk.hpp"
#include "bot/archive.hpp"
#include "bot/http_client.hpp"
#include "bot/metrics.hpp"
#include "bot/service.hpp"
#include "storage/archive_state.hpp"
#include "storage/database.hpp"
#include "storage/journal.hpp"
#include "support/support.hpp"

#include <SQLiteCpp/Database.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <csignal>
#include <cstdlib>

using namespace qunbot;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr const char* corp = "wwarchivecorp001";
constexpr const char* archive_secret = "archive-secret-for-tests";

// An RSA key pair made at test time, and records encrypted the way WeCom does (RSA step) and
// the way the fake SDK expects (DecryptData step).
struct Keys {
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{EVP_RSA_gen(2048), EVP_PKEY_free};
    std::string pem() const
    {
        std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
        PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
        char* data = nullptr;
        const long n = BIO_get_mem_data(bio.get(), &data);
        return std::string(data, static_cast<std::size_t>(n));
    }
    std::string encrypt(const std::string& plain) const
    {
        std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new(key.get(), nullptr), EVP_PKEY_CTX_free);
        REQUIRE(EVP_PKEY_encrypt_init(ctx.get()) == 1);
        REQUIRE(EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) == 1);
        std::size_t len = 0;
        const auto* in = reinterpret_cast<const unsigned char*>(plain.data());
        REQUIRE(EVP_PKEY_encrypt(ctx.get(), nullptr, &len, in, plain.size()) == 1);
        std::string out(len, '\0');
        REQUIRE(EVP_PKEY_encrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, in, plain.size()) == 1);
        out.resize(len);
        return wecom::base64_encode(out);
    }
    json record(std::uint64_t seq, const json& message, int version = 1) const
    {
        const auto random_key = "rk" + std::to_string(seq) + "abcdefghijklmnop";
        return json{{"seq", seq},
                    {"msgid", message.value("msgid", std::string())},
                    {"publickey_ver", version},
                    {"encrypt_random_key", encrypt(random_key)},
                    {"encrypt_chat_msg", wecom::base64_encode(random_key + "|" + message.dump())}};
    }
};

const Keys& keys()
{
    static const Keys k;
    return k;
}

json text_message(int i, const std::string& room = "wrARCHIVEROOM")
{
    return json{{"msgid", "MSG" + std::to_string(i)}, {"action", "send"}, {"from", "wmMEMBER" + std::to_string(i % 7)},
                {"tolist", {"zhangsan"}}, {"roomid", room}, {"msgtime", 1'790'000'000'000LL + i * 1000},
                {"msgtype", "text"}, {"text", {{"content", "消息 " + std::to_string(i)}}}};
}

void write_data(const std::string& path, const std::vector<json>& records, int delay_ms = 0, json media = json::object(), int chunk = 0)
{
    json d{{"corpid", corp}, {"secret", archive_secret}, {"records", records}, {"media", media}, {"delay_ms", delay_ms}};
    if (chunk > 0) d["chunk_bytes"] = chunk;
    // Written aside and renamed: the SDK re-reads the file on every call.
    test::write_file(path + ".tmp", d.dump());
    std::filesystem::rename(path + ".tmp", path);
}

// Archive options for an in-process puller over `dir`'s database and the fake SDK, key version 1.
bot::Archive::Options archive_options(const test::TempDir& dir)
{
    test::write_file(dir.file("v1.pem"), keys().pem());
    bot::Archive::Options ao;
    ao.database = dir.file("q.db");
    ao.config.library = QUNBOT_FAKE_FINANCE_SDK;
    ao.config.secret = core::Secret(archive_secret);
    ao.config.private_keys = {{1, dir.file("v1.pem")}};
    ao.tenant = corp;
    ao.app = "t";
    return ao;
}

// A bot configuration with the archive on (the fake SDK, key version 1), plus `extra` settings.
std::string archive_config(const test::TempDir& dir, const std::string& extra)
{
    test::write_file(dir.file("v1.pem"), keys().pem());
    test::write_file(dir.file("archive.secrets.json"), std::string("{\"archive_secret\":\"") + archive_secret + "\"}");
    return test::write_test_config(dir, test::vector_token, test::vector_key, corp,
                                   "\"archive\":{\"library\":\"" + std::string(QUNBOT_FAKE_FINANCE_SDK) + "\",\"secrets_file\":\"" +
                                       dir.file("archive.secrets.json") + "\",\"private_keys\":[{\"version\":1,\"file\":\"" +
                                       dir.file("v1.pem") + "\"}]," + extra + "},");
}

} // namespace

TEST_CASE("GetChatData answers and the RSA step with a real key pair", "[archive]")
{
    const auto good = wecom::parse_chat_data(R"({"errcode":0,"errmsg":"ok","chatdata":[{"seq":196,"msgid":"m","publickey_ver":3,"encrypt_random_key":"k","encrypt_chat_msg":"c"}]})");
    REQUIRE(good.ok());
    REQUIRE(good->size() == 1);
    CHECK((*good)[0].seq == 196);
    CHECK((*good)[0].publickey_ver == 3);
    CHECK(wecom::parse_chat_data(R"({"errcode":0,"errmsg":"ok","chatdata":[]})")->empty());
    const auto bad = wecom::parse_chat_data(R"({"errcode":301042,"errmsg":"ip not allowed"})");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message == "GetChatData errcode 301042: ip not allowed");

    wecom::ArchiveKeys k;
    REQUIRE(k.add(1, keys().pem()).ok());
    CHECK_FALSE(k.add(2, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n").ok());
    const auto rk = k.random_key(1, keys().encrypt("0123456789abcdef0123456789abcdef"));
    REQUIRE(rk.ok());
    CHECK(*rk == "0123456789abcdef0123456789abcdef");
    const auto missing = k.random_key(2, keys().encrypt("x"));
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == "archive_10007");
    CHECK(k.random_key(1, "!!!").error().code == "archive_10008");
}

TEST_CASE("every archived message type maps to an event", "[archive]")
{
    const wecom::ParseContext ctx{"t", corp};
    auto map = [&](const json& m) {
        auto e = wecom::map_archive_message(m.dump(), ctx);
        REQUIRE(e.ok());
        return *e;
    };
    auto base = [](const std::string& type, json body) {
        json m{{"msgid", "M-" + type}, {"action", "send"}, {"from", "wmA"}, {"tolist", {"u1", "u2"}}, {"roomid", "wrR"},
               {"msgtime", 1'547'087'894'783LL}, {"msgtype", type}};
        if (!body.is_null()) m[type] = std::move(body);
        return m;
    };
    auto e = map(base("text", {{"content", "加我微信"}}));
    CHECK(e.kind == core::EventKind::message);
    CHECK(e.group_id == "wrR");
    CHECK(e.actor == "wmA");
    CHECK(e.time == 1'547'087'894);
    CHECK(e.text == "加我微信");
    CHECK(e.dedup_key == "archive:M-text");
    CHECK(e.attribute("tolist") == "u1,u2");
    e = map(base("image", {{"sdkfileid", "F1"}, {"md5sum", "abc"}, {"filesize", 4096}}));
    CHECK(e.message_type == "image");
    CHECK(e.attribute("sdkfileid") == "F1");
    CHECK(e.attribute("filesize") == "4096");
    e = map(base("link", {{"title", "优惠"}, {"description", "点我"}, {"link_url", "http://x.cn"}, {"image_url", "http://i"}}));
    CHECK(e.attribute("url") == "http://x.cn");
    CHECK(e.text == "优惠 点我 http://x.cn");
    e = map(base("weapp", {{"title", "小程序"}, {"description", "d"}, {"username", "gh_1@app"}, {"displayname", "店"}}));
    CHECK(e.message_type == "weapp");
    CHECK(e.attribute("username") == "gh_1@app");
    e = map(base("card", {{"corpname", "某公司"}, {"userid", "wmCARD"}}));
    CHECK(e.attribute("userid") == "wmCARD");
    e = map(base("file", {{"sdkfileid", "F2"}, {"filename", "价目表.xlsx"}, {"fileext", "xlsx"}, {"filesize", 10}}));
    CHECK(e.text == "价目表.xlsx");
    for (const char* t : {"video", "voice", "emotion"}) CHECK(map(base(t, {{"sdkfileid", "F"}})).message_type == t);
    e = map(base("redpacket", {{"type", 2}, {"wish", "恭喜发财"}, {"totalcnt", 10}, {"totalamount", 3000}}));
    CHECK(e.text == "恭喜发财");
    CHECK(e.attribute("totalamount") == "3000");
    CHECK(map(base("external_redpacket", {{"type", 1}, {"wish", "w"}})).message_type == "external_redpacket");
    e = map(base("mixed", {{"item", {{{"type", "text"}, {"content", "{\"content\":\"你好\"}"}}, {{"type", "image"}, {"content", "{}"}}}}}));
    CHECK(e.text == "你好");
    e = map(base("revoke", {{"pre_msgid", "M-old"}}));
    CHECK(e.kind == core::EventKind::message_recalled);
    CHECK(e.subject == "M-old");
    e = map(json{{"msgid", "SW1"}, {"action", "switch"}, {"time", 1'547'087'894'783LL}, {"user", "zhangsan"}});
    CHECK(e.kind == core::EventKind::unknown);
    CHECK(e.raw_type == "archive/switch");
    CHECK(map(base("vote", nullptr)).message_type == "vote");
    e = map(base("hologram", {{"x", 1}}));
    CHECK(e.message_type == "other");
    CHECK(e.attribute("type") == "hologram");
    e = map(json{{"msgid", "P1"}, {"action", "send"}, {"from", "wmA"}, {"tolist", {"zhangsan"}}, {"roomid", ""}, {"msgtime", 1}, {"msgtype", "text"},
                 {"text", {{"content", "1:1"}}}});
    CHECK(e.group_id.empty()); // 1:1 messages are kept apart from group messages
    CHECK_FALSE(wecom::map_archive_message("[]", ctx).ok());
}

TEST_CASE("the SDK is loaded at run time: a clear error without it, chunked media with it", "[archive]")
{
    const auto missing = wecom::FinanceSdk::load("/nonexistent/libWeWorkFinanceSdk_C.so");
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == "archive_sdk_missing");
    CHECK_THAT(missing.error().message, Catch::Contains("/nonexistent/libWeWorkFinanceSdk_C.so"));
    const auto not_sdk = wecom::FinanceSdk::load("libssl.so.3");
    REQUIRE_FALSE(not_sdk.ok());
    CHECK(not_sdk.error().code == "archive_sdk_incomplete");

    test::TempDir dir;
    std::string bytes;
    for (int i = 0; i < 5500; ++i) bytes += static_cast<char>(i * 7 % 256);
    write_data(dir.file("sdk.json"), {}, 0, json{{"FILEID1", wecom::base64_encode(bytes)}}, 1000);
    ::setenv("QUNBOT_FAKE_FINANCE_SDK", dir.file("sdk.json").c_str(), 1);
    auto sdk = wecom::FinanceSdk::load(QUNBOT_FAKE_FINANCE_SDK);
    REQUIRE(sdk.ok());
    CHECK_FALSE((*sdk)->init(corp, core::Secret("wrong secret")).ok());
    REQUIRE((*sdk)->init(corp, core::Secret(archive_secret)).ok());
    const auto first = (*sdk)->media_chunk("FILEID1", "", 5);
    REQUIRE(first.ok());
    CHECK(first->data.size() == 1000);
    CHECK_FALSE(first->finished);
    const auto all = (*sdk)->media("FILEID1", 1 << 20, 5);
    REQUIRE(all.ok());
    CHECK(*all == bytes); // six chunks, reassembled
    CHECK((*sdk)->media("FILEID1", 3000, 5).error().code == "media_too_large");
    CHECK((*sdk)->media("NOFILE", 1 << 20, 5).error().code == "archive_10005");
}

TEST_CASE("pulls resume from the stored seq, and a missing key version stops without skipping", "[archive]")
{
    test::TempDir dir;
    std::vector<json> records;
    for (int i = 1; i <= 25; ++i) records.push_back(keys().record(static_cast<std::uint64_t>(i), text_message(i)));
    write_data(dir.file("sdk.json"), records);
    ::setenv("QUNBOT_FAKE_FINANCE_SDK", dir.file("sdk.json").c_str(), 1);
    storage::Journal::Options jo;
    jo.path = dir.file("q.db");
    storage::Journal journal(jo);
    bot::Registry metrics;
    auto ao = archive_options(dir);
    ao.config.batch = 10;
    auto archive = bot::Archive::create(journal, metrics, ao);
    REQUIRE(archive.ok());
    auto n = (*archive)->pull();
    REQUIRE(n.ok());
    CHECK(*n == 25);
    auto count = [&](const std::string& sql) {
        SQLite::Database db(jo.path);
        return db.execAndGet(sql).getInt64();
    };
    CHECK(count("SELECT count(*) FROM inbox WHERE kind = 'message' AND group_id = 'wrARCHIVEROOM'") == 25);
    CHECK(count("SELECT seq FROM archive_state") == 25);
    CHECK(*(*archive)->pull() == 0); // nothing newer

    // A record of key version 2 (not configured), then one of version 1.
    records.push_back(keys().record(26, text_message(26), 2));
    records.push_back(keys().record(27, text_message(27), 1));
    write_data(dir.file("sdk.json"), records);
    const auto stopped = (*archive)->pull();
    REQUIRE_FALSE(stopped.ok());
    CHECK(stopped.error().code == "archive_10007");
    CHECK(count("SELECT seq FROM archive_state") == 25); // not past the record it could not read
    CHECK(count("SELECT count(*) FROM inbox") == 25);
    {
        SQLite::Database db(jo.path);
        CHECK_THAT(storage::archive_position(db, corp).last_error, Catch::Contains("publickey_ver 2"));
    }
    CHECK_THAT(metrics.render(), Catch::Contains("qunbot_archive_errors_total{code=\"archive_10007\"} 1"));

    // The same key serves as version 2 once configured (a rotation): the pull goes on from 25.
    archive->reset();
    ao.config.private_keys.emplace_back(2, dir.file("v1.pem"));
    archive = bot::Archive::create(journal, metrics, ao);
    REQUIRE(archive.ok());
    CHECK(*(*archive)->pull() == 2);
    CHECK(count("SELECT seq FROM archive_state") == 27);
    {
        SQLite::Database db(jo.path);
        CHECK(storage::archive_position(db, corp).last_error.empty());
    }
    journal.close();
}

TEST_CASE("with scan_qr, QR codes in archived group images are read into the event", "[archive][qr]")
{
    test::TempDir dir;
    int side = 0;
    const auto pixels = test::qr_pixels("https://u.wechat.com/EAqrSpam", side); // sets `side`
    const auto png = test::png_of(pixels, side);
    json image{{"msgid", "IMG1"}, {"action", "send"}, {"from", "wmQR"}, {"tolist", {"u"}}, {"roomid", "wrQR"}, {"msgtime", 1'790'000'000'000LL},
               {"msgtype", "image"}, {"image", {{"sdkfileid", "QRFILE"}, {"md5sum", "x"}, {"filesize", png.size()}}}};
    json plain = image;
    plain["msgid"] = "IMG2";
    plain["image"]["sdkfileid"] = "NOTANIMAGE";
    write_data(dir.file("sdk.json"), {keys().record(1, image), keys().record(2, plain)}, 0,
               json{{"QRFILE", wecom::base64_encode(png)}, {"NOTANIMAGE", wecom::base64_encode("not an image")}}, 4096);
    ::setenv("QUNBOT_FAKE_FINANCE_SDK", dir.file("sdk.json").c_str(), 1);
    storage::Journal::Options jo;
    jo.path = dir.file("q.db");
    storage::Journal journal(jo);
    bot::Registry metrics;
    auto ao = archive_options(dir);
    ao.config.scan_qr = true;
    auto archive = bot::Archive::create(journal, metrics, ao);
    REQUIRE(archive.ok());
    REQUIRE(*(*archive)->pull() == 2);
    SQLite::Database db(jo.path);
    CHECK(db.execAndGet("SELECT json_extract(event_json, '$.attributes.qr') FROM inbox WHERE dedup_key = 'archive:IMG1'").getString() ==
          "https://u.wechat.com/EAqrSpam");
    CHECK(db.execAndGet("SELECT json_extract(event_json, '$.attributes.qr_error') FROM inbox WHERE dedup_key = 'archive:IMG2'").getString() ==
          "image_format");
    archive->reset();
    journal.close();
}

TEST_CASE("SIGKILL of the real process mid-pull: after the restart every message is stored exactly once", "[archive][process]")
{
    test::TempDir dir;
    constexpr int total = 1200;
    std::vector<json> records;
    for (int i = 1; i <= total; ++i) records.push_back(keys().record(static_cast<std::uint64_t>(i), text_message(i)));
    write_data(dir.file("sdk.json"), records, 40); // 40 ms per GetChatData call, 50 records per call
    ::setenv("QUNBOT_FAKE_FINANCE_SDK", dir.file("sdk.json").c_str(), 1); // inherited by the child
    const auto config = archive_config(dir, "\"batch\":50,\"poll_ms\":100");
    auto count = [&](const std::string& sql) {
        try {
            SQLite::Database db(dir.file("q.db"));
            return db.execAndGet(sql).getInt64();
        } catch (const std::exception&) {
            return std::int64_t{-1}; // not created yet
        }
    };
    std::optional<test::Child> child;
    test::start_server(child, config);
    REQUIRE(test::eventually([&] { return count("SELECT count(*) FROM inbox") >= 200; }));
    child->signal(SIGKILL);
    REQUIRE(child->wait_exit(10s).has_value());
    const auto at_kill = count("SELECT count(*) FROM inbox");
    CHECK(at_kill < total); // the kill interrupted the pull
    CHECK(count("SELECT seq FROM archive_state") == at_kill); // the seq moved with the events, never ahead

    test::start_server(child, config);
    REQUIRE(test::eventually([&] { return count("SELECT seq FROM archive_state") == total; }));
    child->signal(SIGTERM);
    CHECK(child->wait_exit(10s) == 0);
    CHECK(count("SELECT count(*) FROM inbox") == total);
    CHECK(count("SELECT count(DISTINCT dedup_key) FROM inbox") == total);
    CHECK(count("SELECT count(*) FROM activity WHERE kind = 'message'") == total);

    // The command line: where the archive stands, and one media file through the same SDK.
    test::Child status({QUNBOT_BINARY, "archive", "status", "--config", config});
    REQUIRE(status.wait_exit(30s) == 0);
    CHECK(status.wait_for_line(std::string(corp) + "  seq 1200  messages 1200", 5s).has_value());
    CHECK(status.wait_for_line("last error: none", 5s).has_value());
    write_data(dir.file("sdk.json"), records, 0, json{{"IMG1", wecom::base64_encode("\x89PNG fake image bytes")}}, 4);
    test::Child media({QUNBOT_BINARY, "archive", "media", "IMG1", "--out", dir.file("img.png"), "--config", config});
    REQUIRE(media.wait_exit(30s) == 0);
    CHECK(test::read_file(dir.file("img.png")) == "\x89PNG fake image bytes");
}

TEST_CASE("a msgaudit_notify callback makes the running bot pull at once", "[archive][e2e]")
{
    test::TempDir dir;
    std::vector<json> records{keys().record(1, text_message(1))};
    write_data(dir.file("sdk.json"), records);
    ::setenv("QUNBOT_FAKE_FINANCE_SDK", dir.file("sdk.json").c_str(), 1);
    // The timer alone would wait ten minutes: only the notify can explain a pull within the test.
    const auto config = archive_config(dir, "\"poll_ms\":600000");
    std::string db_path;
    auto service = test::start_service(config, db_path);
    auto count = [&](const std::string& sql) {
        SQLite::Database db(db_path);
        return db.execAndGet(sql).getInt64();
    };
    REQUIRE(test::eventually([&] { return count("SELECT count(*) FROM archive_state WHERE seq = 1") == 1; })); // the pull at start
    records.push_back(keys().record(2, text_message(2)));
    write_data(dir.file("sdk.json"), records);
    auto crypto = wecom::CallbackCrypto::create(core::Secret(test::vector_token), core::Secret(test::vector_key), corp);
    REQUIRE(crypto.ok());
    wecom::TestEventSpec notify;
    notify.kind = "archive_notify";
    notify.corp_id = corp;
    auto payload = wecom::make_test_payload(notify);
    REQUIRE(payload.ok());
    const auto sealed = wecom::seal_callback(*crypto, *payload, "1700000000", "nn1", false);
    bot::HttpClient client("127.0.0.1", service->port(), 5s);
    auto r = client.request("POST", "/cb?" + sealed.query, sealed.body);
    REQUIRE(r.ok());
    CHECK(r->status == 200);
    REQUIRE(test::eventually([&] { return count("SELECT count(*) FROM archive_state WHERE seq = 2") == 1; }, 10s));
    CHECK(count("SELECT count(*) FROM inbox WHERE dedup_key = 'archive:MSG2'") == 1);
    service->request_shutdown();
    service->wait();
}
