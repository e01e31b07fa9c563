// The real HTTP server and routes over loopback, with real encrypted callbacks: the published
// vectors as WeCom sent them, rejections, and the connection limits.
#include "bot/service.hpp"

#include "adapters/wecom/callback_crypto.hpp"
#include "adapters/wecom/test_event.hpp"
#include "bot/http_client.hpp"
#include "bot/metrics.hpp"
#include "support/support.hpp"

#include <SQLiteCpp/Database.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>
#include <thread>

using namespace qunbot;
using namespace std::chrono_literals;

namespace {

constexpr const char* a1_encrypt =
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
constexpr const char* a2_encrypt =
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==";
constexpr const char* c1_encrypt =
    "CZWs4CWRpI4VolQlvn4dlEC1alN2MUEY2VklGehgBVLBrlVF7SyT+SV+Toj43l4ayJ9UMGKphktKKmP7B2j/P1ey67XB8PBgS7Wr5/8+w/yWriZv3Vmoo/MH3/1HsIWZrPQ3N2mJrelStIfI2Y8kLKXA7EhfZgZX4o+ffdkZDM76SEl79Ib9mw7TGjZ9Aw/x/A2VjNbV1E8BtEbRxYYcQippYNw7hr8sFfa3nW1xLdxokt8QkRX83vK3DFP2F6TQFPL2Tu98UwhcUpPvdJBuu1/yiOQIScppV3eOuLWEsko=";

const std::string a2_query = "msg_signature=477715d11cdb4164915debcba66cb864d751f3e6&timestamp=1409659813&nonce=1372623149";
const std::string a2_body = std::string("<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>"
                                        "<AgentID><![CDATA[218]]></AgentID><Encrypt><![CDATA[") +
                            a2_encrypt + "]]></Encrypt></xml>";

// Captures everything the process logs while a test runs.
struct LogCapture {
    std::ostringstream text;
    std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
    LogCapture()
    {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text);
        spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
        spdlog::set_level(spdlog::level::debug);
    }
    ~LogCapture() { spdlog::set_default_logger(previous); }
    std::string str()
    {
        spdlog::default_logger()->flush();
        return text.str();
    }
};

struct Server {
    test::TempDir dir;
    std::unique_ptr<bot::Service> service;
    std::string db_path;
    bool stopped = false;

    explicit Server(const std::string& extra = "", const std::string& corp = test::vector_corp)
    {
        service = test::start_service(test::write_test_config(dir, test::vector_token, test::vector_key, corp, extra), db_path);
    }
    ~Server()
    {
        if (stopped) return;
        service->request_shutdown();
        service->wait();
    }
    bot::HttpClient client() { return bot::HttpClient("127.0.0.1", service->port(), 5s); }
    std::int64_t count(const std::string& sql)
    {
        SQLite::Database db(db_path);
        return db.execAndGet(sql).getInt64();
    }
    std::string metrics() { return service->metrics().render(); }
    // For counters bumped after the peer already saw the effect (e.g. a close): wait, with a deadline.
    bool metrics_eventually_contain(const std::string& line, std::chrono::milliseconds deadline = 5s)
    {
        const auto until = std::chrono::steady_clock::now() + deadline;
        while (metrics().find(line) == std::string::npos) {
            if (std::chrono::steady_clock::now() > until) return false;
            std::this_thread::sleep_for(1ms);
        }
        return true;
    }
};

bot::ClientResponse must(core::Result<bot::ClientResponse> r)
{
    REQUIRE(r.ok());
    return std::move(r).value();
}

// Raw socket access for the tests that must misbehave as a client.
struct RawConnection {
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::socket socket{ioc};
    explicit RawConnection(std::uint16_t port)
    {
        socket.connect({boost::asio::ip::make_address("127.0.0.1"), port});
    }
    void send(const std::string& data) { boost::asio::write(socket, boost::asio::buffer(data)); }
    // Reads until the peer closes (the server closes on every error path tested here).
    std::string read_all()
    {
        std::string out;
        boost::system::error_code ec;
        char buf[4096];
        for (;;) {
            const auto n = socket.read_some(boost::asio::buffer(buf), ec);
            if (ec) break;
            out.append(buf, n);
        }
        return out;
    }
};

} // namespace

TEST_CASE("published vector A1: URL verification through the server", "[http][intake][vector]")
{
    Server s;
    auto c = s.client();
    const auto res = must(c.request("GET", "/cb?msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589"
                                           "&nonce=263014780&echostr=" + wecom::percent_encode(a1_encrypt)));
    CHECK(res.status == 200);
    CHECK(res.body == "1616140317555161061"); // no quotes, no newline
    CHECK_THAT(s.metrics(), Catch::Contains("qunbot_http_requests_total{route=\"t\",outcome=\"verified\"} 1"));
}

TEST_CASE("published vector A2 is journaled once, and its retries and its JSON twin (C1) are duplicates", "[http][intake][vector]")
{
    Server s;
    auto c = s.client();
    const auto first = must(c.request("POST", "/cb?" + a2_query, a2_body));
    CHECK(first.status == 200);
    CHECK(first.body.empty());
    CHECK(s.count("SELECT count(*) FROM inbox") == 1);
    CHECK(s.count("SELECT count(*) FROM inbox WHERE kind = 'message' AND actor = 'mycreate'") == 1);

    CHECK(must(c.request("POST", "/cb?" + a2_query, a2_body)).status == 200); // WeCom's retry
    // C1 is the same message (MsgId 4561255354251345929) delivered in the JSON variant.
    const std::string c1_body = std::string(R"({"tousername":"wx5823bf96d3bd56c7","encrypt":")") + c1_encrypt + R"(","agentid":218})";
    const auto json = must(c.request("POST", "/cb?msg_signature=0623cbc5a8cbee5bcc137c70de99575366fc2af3&timestamp=1409659813&nonce=1372623149",
                                     c1_body, "application/json"));
    CHECK(json.status == 200);
    CHECK(s.count("SELECT count(*) FROM inbox") == 1);
    CHECK(s.count("SELECT count(*) FROM activity") == 1);
    const auto m = s.metrics();
    CHECK_THAT(m, Catch::Contains("qunbot_events_total{app=\"t\",kind=\"message\"} 1"));
    CHECK_THAT(m, Catch::Contains("qunbot_events_duplicate_total{app=\"t\"} 2"));
}

TEST_CASE("every kind of test event goes through the real path and is journaled", "[http][intake]")
{
    Server s;
    auto crypto = wecom::CallbackCrypto::create(core::Secret(test::vector_token), core::Secret(test::vector_key), test::vector_corp);
    REQUIRE(crypto.ok());
    auto c = s.client();
    int n = 0;
    for (const auto& kind : wecom::test_event_kinds()) {
        wecom::TestEventSpec spec;
        spec.kind = kind;
        spec.corp_id = test::vector_corp;
        spec.create_time = 1'700'000'000 + n;
        auto payload = wecom::make_test_payload(spec);
        REQUIRE(payload.ok());
        const auto sealed = wecom::seal_callback(*crypto, *payload, "1700000000", "n" + std::to_string(n), n % 2 == 1);
        const auto res = must(c.request("POST", "/cb?" + sealed.query, sealed.body));
        INFO(kind);
        CHECK(res.status == 200);
        ++n;
    }
    CHECK(s.count("SELECT count(*) FROM inbox") == n);
    CHECK(s.count("SELECT count(*) FROM inbox WHERE kind = 'unknown'") == 0);
    CHECK(s.count("SELECT count(DISTINCT kind) FROM inbox") == n); // one event kind per test kind
}

TEST_CASE("rejected callbacks get a specific status, reason metric and log line, and store nothing", "[http][intake][negative]")
{
    LogCapture logs;
    Server s;
    auto c = s.client();
    auto crypto = wecom::CallbackCrypto::create(core::Secret(test::vector_token), core::Secret(test::vector_key), test::vector_corp);
    REQUIRE(crypto.ok());

    struct Case {
        std::string name, method, target, body;
        int status;
        std::string reason;
    };
    const std::string bad_sig = "msg_signature=0000000000000000000000000000000000000000&timestamp=1409659813&nonce=1372623149";
    // A correctly signed payload that is not XML/JSON after decryption.
    const auto garbage = wecom::seal_callback(*crypto, "this is not a payload", "1", "2");
    // Signed for another corp: decrypts, but the receiveid is wrong.
    auto other = wecom::CallbackCrypto::create(core::Secret(test::vector_token), core::Secret(test::vector_key), "wwOtherCorp");
    REQUIRE(other.ok());
    const auto foreign = wecom::seal_callback(*other, "<xml><MsgType>text</MsgType></xml>", "1", "2");
    const Case cases[] = {
        {"wrong signature", "POST", "/cb?" + bad_sig, a2_body, 403, "signature_mismatch"},
        {"no signature", "POST", "/cb?timestamp=1&nonce=2", a2_body, 403, "missing_parameter"},
        {"body not XML", "POST", "/cb?" + a2_query, "<xml><Encrypt>", 400, "malformed_body"},
        {"no Encrypt", "POST", "/cb?" + a2_query, "<xml><ToUserName>x</ToUserName></xml>", 400, "missing_encrypt"},
        {"wrong receiveid", "POST", "/cb?" + foreign.query, foreign.body, 403, "receiveid_mismatch"},
        {"malformed payload", "POST", "/cb?" + garbage.query, garbage.body, 400, "malformed_payload"},
        {"echostr with a wrong signature", "GET", "/cb?msg_signature=00&timestamp=1&nonce=2&echostr=abc", "", 403, "signature_mismatch"},
    };
    for (const auto& k : cases) {
        INFO(k.name);
        const auto res = must(c.request(k.method, k.target, k.body));
        CHECK(res.status == k.status);
        CHECK_THAT(res.body, Catch::Contains(k.reason));
        CHECK_THAT(s.metrics(), Catch::Contains("qunbot_callback_rejections_total{app=\"t\",reason=\"" + k.reason + "\"}"));
    }
    CHECK(must(c.request("GET", "/nowhere")).status == 404);
    CHECK(must(c.request("PUT", "/cb", "x")).status == 405);
    CHECK(s.count("SELECT count(*) FROM inbox") == 0);

    const auto text = logs.str();
    CHECK_THAT(text, Catch::Contains("reason=signature_mismatch"));
    CHECK_THAT(text, Catch::Contains("reason=receiveid_mismatch"));
    // Secrets never reach the log.
    CHECK_THAT(text, !Catch::Contains(test::vector_token));
    CHECK_THAT(text, !Catch::Contains(test::vector_key));
}

TEST_CASE("secrets never reach the database", "[http][intake][secrets]")
{
    Server s;
    auto c = s.client();
    CHECK(must(c.request("POST", "/cb?" + a2_query, a2_body)).status == 200);
    s.service->request_shutdown();
    s.service->wait();
    s.stopped = true;
    const auto db_file = s.db_path;
    std::string bytes = test::read_file(db_file) + test::read_file(db_file + "-wal");
    REQUIRE(bytes.find("mycreate") != std::string::npos); // the event is in there...
    CHECK(bytes.find(test::vector_token) == std::string::npos); // ...the token and key are not
    CHECK(bytes.find(test::vector_key) == std::string::npos);
}

TEST_CASE("keep-alive: many requests share one connection", "[http][server]")
{
    Server s;
    auto c = s.client();
    for (int i = 0; i < 5; ++i) CHECK(must(c.request("GET", "/healthz")).status == 200);
    CHECK_THAT(s.metrics(), Catch::Contains("qunbot_http_connections_accepted_total 1\n"));
    const auto h = must(c.request("GET", "/healthz"));
    CHECK(h.body == R"({"status":"ok","apps":1})");
}

TEST_CASE("limits: body size 413, header size 431, slow clients, connection cap", "[http][server][limits]")
{
    Server s(R"("http":{"max_body_bytes":1024,"max_header_bytes":512,"read_timeout_ms":300,"idle_timeout_ms":60000,"max_connections":2},)");
    const auto port = s.service->port();

    SECTION("body over the limit")
    {
        RawConnection raw(port);
        raw.send("POST /cb?" + a2_query + " HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n" + std::string(4096, 'x'));
        const auto res = raw.read_all();
        CHECK_THAT(res, Catch::StartsWith("HTTP/1.1 413"));
        CHECK_THAT(s.metrics(), Catch::Contains("qunbot_http_protocol_errors_total{reason=\"body_too_large\"} 1"));
    }
    SECTION("header over the limit")
    {
        RawConnection raw(port);
        raw.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2048, 'y') + "\r\n\r\n");
        CHECK_THAT(raw.read_all(), Catch::StartsWith("HTTP/1.1 431"));
    }
    SECTION("a client that never finishes its request is cut off")
    {
        RawConnection raw(port);
        raw.send("POST /cb HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-a-part");
        // read_all returns when the server closes; the read timeout is 300 ms, the test's own
        // deadline is ctest's. The server closes without an answer: nothing was acknowledged.
        const auto start = std::chrono::steady_clock::now();
        CHECK(raw.read_all().empty());
        CHECK(std::chrono::steady_clock::now() - start < 5s);
        CHECK(s.metrics_eventually_contain("qunbot_http_protocol_errors_total{reason=\"read_timeout\"} 1"));
    }
    SECTION("garbage instead of HTTP")
    {
        RawConnection raw(port);
        raw.send("\x16\x03\x01 definitely not http\r\n\r\n");
        CHECK_THAT(raw.read_all(), Catch::StartsWith("HTTP/1.1 400"));
    }
    SECTION("connections over the cap are refused with 503")
    {
        auto a = s.client();
        auto b = s.client();
        REQUIRE(must(a.request("GET", "/healthz")).status == 200); // both held open (keep-alive)
        REQUIRE(must(b.request("GET", "/healthz")).status == 200);
        RawConnection third(port);
        CHECK_THAT(third.read_all(), Catch::StartsWith("HTTP/1.1 503"));
        CHECK_THAT(s.metrics(), Catch::Contains("qunbot_http_connections_rejected_total{reason=\"max_connections\"} 1"));
        // The held connections still work.
        CHECK(must(a.request("GET", "/healthz")).status == 200);
    }
}

TEST_CASE("/metrics exposes the documented families", "[http][metrics]")
{
    Server s;
    auto c = s.client();
    REQUIRE(must(c.request("POST", "/cb?" + a2_query, a2_body)).status == 200);
    const auto res = must(c.request("GET", "/metrics"));
    CHECK(res.status == 200);
    for (const char* family : {"qunbot_http_requests_total", "qunbot_events_total", "qunbot_journal_commit_seconds_bucket",
                               "qunbot_journal_batch_events_bucket", "qunbot_journal_sync_seconds_bucket",
                               "qunbot_journal_wal_bytes", "qunbot_journal_wal_restarts_total",
                               "qunbot_journal_wal_catch_up_seconds_bucket", "qunbot_http_connections_active"}) {
        CHECK_THAT(res.body, Catch::Contains(family));
    }
    // The 200 waited for a sync of the WAL (durability "full" is the default).
    CHECK_THAT(res.body, !Catch::Contains("qunbot_journal_sync_seconds_count 0"));
    // Two commits: the rule set stored as the last good one at start, then the event.
    CHECK_THAT(res.body, Catch::Contains("qunbot_journal_commit_seconds_count 2"));
    CHECK_THAT(res.body, Catch::Contains("qunbot_http_requests_total{route=\"t\",outcome=\"stored\"} 1"));
}

TEST_CASE("graceful shutdown closes idle keep-alive connections and returns promptly", "[http][shutdown]")
{
    Server s(R"("http":{"idle_timeout_ms":600000},"shutdown_grace_ms":3000,)");
    auto c = s.client();
    REQUIRE(must(c.request("GET", "/healthz")).status == 200);
    // Shut down the moment the answer arrives: the server may still be finishing the write, the
    // window in which a drain once skipped the connection and left it waiting for the deadline.
    REQUIRE(must(c.request("POST", "/cb?" + a2_query, a2_body)).status == 200);
    s.service->request_shutdown();
    // An idle connection left open would be abandoned at the grace deadline and counted here.
    CHECK(s.service->wait() == 0);
    s.stopped = true;
}

TEST_CASE("several apps are served at once, each with its own token, key and corp id", "[http][intake][vector]")
{
    test::TempDir dir;
    test::write_file(dir.file("a.json"), std::string("{\"token\":\"") + test::vector_token + "\",\"encoding_aes_key\":\"" +
                                             test::vector_key + "\"}");
    test::write_file(dir.file("e.json"), R"({"token":"123456","encoding_aes_key":"kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"})");
    test::write_file(dir.file("q.json"), "{\"listen\":{\"port\":0},\"threads\":2,\"database\":\"" + dir.file("q.db") +
                                             "\",\"apps\":[{\"name\":\"a\",\"path\":\"/wecom/a\",\"corp_id\":\"wx5823bf96d3bd56c7\","
                                             "\"secrets_file\":\"" + dir.file("a.json") + "\"},"
                                             "{\"name\":\"e\",\"path\":\"/wecom/e\",\"corp_id\":\"wx49f0ab532d5d035a\","
                                             "\"secrets_file\":\"" + dir.file("e.json") + "\"}]}");
    auto config = bot::load_config(dir.file("q.json"));
    REQUIRE(config.ok());
    REQUIRE(bot::resolve_secrets(*config).ok());
    auto service = bot::Service::create(*config);
    REQUIRE(service.ok());
    auto& s = **service;
    s.start(false);
    bot::HttpClient c("127.0.0.1", s.port(), 5s);
    // Vector E2 (wechatpy), as its XML body.
    const std::string e2 = "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=";
    const std::string e2_query = "msg_signature=74d92dfeb87ba7c714f89d98870ae5eb62dff26d&timestamp=1411525903&nonce=461056294";
    const std::string e2_body = "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName><Encrypt><![CDATA[" + e2 + "]]></Encrypt></xml>";
    CHECK(must(c.request("POST", "/wecom/a?" + a2_query, a2_body)).status == 200);
    CHECK(must(c.request("POST", "/wecom/e?" + e2_query, e2_body)).status == 200);
    // Crossed over, each is refused: the other app's token does not sign it.
    CHECK(must(c.request("POST", "/wecom/e?" + a2_query, a2_body)).status == 403);
    CHECK(must(c.request("POST", "/wecom/a?" + e2_query, e2_body)).status == 403);
    s.request_shutdown();
    CHECK(s.wait() == 0);
    SQLite::Database db(dir.file("q.db"));
    CHECK(db.execAndGet("SELECT count(*) FROM inbox").getInt64() == 2);
    CHECK(db.execAndGet("SELECT actor FROM inbox WHERE app = 'e'").getString() == "messense");
    CHECK(db.execAndGet("SELECT tenant FROM inbox WHERE app = 'a'").getString() == "wx5823bf96d3bd56c7");
}

TEST_CASE("Expect: 100-continue gets its interim answer before the body is sent", "[http][server]")
{
    Server s;
    RawConnection raw(s.service->port());
    raw.send("POST /cb?" + a2_query + " HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " +
             std::to_string(a2_body.size()) + "\r\nConnection: close\r\n\r\n");
    char buf[64] = {};
    const auto n = raw.socket.read_some(boost::asio::buffer(buf)); // blocks until the server answers
    CHECK_THAT(std::string(buf, n), Catch::StartsWith("HTTP/1.1 100 Continue"));
    raw.send(a2_body);
    const auto rest = raw.read_all();
    CHECK_THAT(rest, Catch::Contains("HTTP/1.1 200 OK"));
    CHECK(s.count("SELECT count(*) FROM inbox") == 1);
}
