// The HTTPS client and the WeCom API client against the fake WeCom server over TLS on loopback
// (a CA made at test time, which the client verifies).
#include "adapters/https/client.hpp"
#include "adapters/wecom/api_client.hpp"
#include "adapters/wecom/performer.hpp"
#include "fakes/fake_wecom.hpp"
#include "support/support.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <thread>

using namespace qunbot;
using namespace std::chrono_literals;
namespace net = boost::asio;

namespace {

const fakes::TestPki& pki() { return fakes::loopback_pki(); }

// co_spawn's futures need a default-constructible value: results travel in an optional.
template <class T>
net::awaitable<std::optional<T>> wrap(net::awaitable<T> a)
{
    co_return co_await std::move(a);
}

// A client world: an io_context with two threads, one strand for the clients, a CA file.
struct World {
    test::TempDir dir;
    fakes::FakeWeCom fake{"wwcorp", "s3cret", pki()};
    net::io_context ioc;
    net::strand<net::io_context::executor_type> strand{net::make_strand(ioc)};
    std::optional<net::executor_work_guard<net::io_context::executor_type>> work{ioc.get_executor()};
    std::vector<std::thread> threads;
    std::atomic<std::int64_t> clock_ms{1'800'000'000'000};
    std::unique_ptr<https::Client> http;
    std::unique_ptr<wecom::ApiClient> api;

    explicit World(https::Options ho = {}, bool fake_clock = false)
    {
        fakes::write_pem(dir.file("ca.pem"), pki().ca_pem);
        ho.system_ca = false;
        ho.ca_file = dir.file("ca.pem");
        http = std::make_unique<https::Client>(strand, ho);
        wecom::ApiOptions ao;
        ao.origin = *https::parse_origin(fake.base_url());
        ao.corp_id = "wwcorp";
        ao.corp_secret = core::Secret("s3cret");
        ao.agent_id = 1000002;
        ao.busy_backoff = 5ms;
        if (fake_clock) {
            ao.now_ms = [this] { return clock_ms.load(); };
            fake.set_clock([this] { return clock_ms.load(); });
        }
        api = std::make_unique<wecom::ApiClient>(*http, ao);
        for (int i = 0; i < 2; ++i) threads.emplace_back([this] { ioc.run(); });
    }
    ~World()
    {
        net::post(strand, [this] { http->close_idle(); });
        work.reset();
        ioc.stop();
        for (auto& t : threads) t.join();
    }

    // Runs a coroutine on the clients' strand and waits for its result (with a deadline).
    template <class T>
    T run(net::awaitable<T> a)
    {
        auto f = net::co_spawn(strand, wrap(std::move(a)), net::use_future);
        REQUIRE(f.wait_for(20s) == std::future_status::ready);
        return *f.get();
    }
};

wecom::Json text(const std::string& s) { return wecom::Json{{"msgtype", "text"}, {"text", {{"content", s}}}}; }

net::awaitable<wecom::ApiResult<wecom::Json>> send_text(wecom::ApiClient* api, std::string user, std::string content)
{
    std::vector<std::string> to{user};
    co_return co_await wecom::message_send(*api, std::move(to), text(content), 1800);
}

} // namespace

TEST_CASE("https client verifies the peer against the configured CA and reuses connections", "[https]")
{
    World w;
    for (int i = 0; i < 5; ++i) {
        auto r = w.run(w.http->request(*https::parse_origin(w.fake.base_url()), "GET", "/cgi-bin/gettoken?corpid=wwcorp&corpsecret=s3cret",
                                       "", "application/json"));
        REQUIRE(r.ok());
        CHECK(r->status == 200);
        CHECK(r->body.find("access_token") != std::string::npos);
    }
    CHECK(w.fake.connections() == 1);
    CHECK(w.http->stats().reused == 4);
}

TEST_CASE("https client refuses a peer whose certificate it cannot verify", "[https]")
{
    test::TempDir dir;
    fakes::FakeWeCom fake{"wwcorp", "s3cret", pki()};
    net::io_context ioc;
    https::Options ho;
    ho.system_ca = true; // the system store does not know the test CA
    https::Client http(ioc.get_executor(), ho);
    auto f = net::co_spawn(ioc, wrap(http.request(*https::parse_origin(fake.base_url()), "GET", "/", "", "text/plain")), net::use_future);
    ioc.run();
    auto r = *f.get();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == "tls_failed");
    CHECK(r.error().message.find("certificate verification failed") != std::string::npos);

    SECTION("and one whose name does not match, even with the right CA")
    {
        const auto other = fakes::make_test_pki({"example.org"});
        fakes::FakeWeCom wrong_name{"wwcorp", "s3cret", other};
        fakes::write_pem(dir.file("other.pem"), other.ca_pem);
        net::io_context io2;
        https::Options o2;
        o2.system_ca = false;
        o2.ca_file = dir.file("other.pem");
        https::Client c2(io2.get_executor(), o2);
        auto f2 = net::co_spawn(io2, wrap(c2.request(*https::parse_origin(wrong_name.base_url()), "GET", "/", "", "text/plain")),
                                net::use_future);
        io2.run();
        auto r2 = *f2.get();
        REQUIRE_FALSE(r2.ok());
        CHECK(r2.error().code == "tls_failed");
    }
}

TEST_CASE("access_token: one fetch for many concurrent calls, cached afterwards", "[wecom][api]")
{
    World w;
    std::vector<std::future<std::optional<wecom::ApiResult<wecom::Json>>>> calls;
    for (int i = 0; i < 20; ++i) {
        calls.push_back(net::co_spawn(w.strand, wrap(send_text(w.api.get(), "staff" + std::to_string(i), "hello")), net::use_future));
    }
    for (auto& f : calls) {
        REQUIRE(f.wait_for(20s) == std::future_status::ready);
        CHECK(f.get()->ok());
    }
    CHECK(w.fake.calls("gettoken") == 1);
    CHECK(w.fake.effects("message/send").size() == 20);
    CHECK(w.run(send_text(w.api.get(), "staff0", "again")).ok());
    CHECK(w.fake.calls("gettoken") == 1);
}

TEST_CASE("access_token revoked early is refreshed once and the call retried", "[wecom][api]")
{
    World w;
    REQUIRE(w.run(send_text(w.api.get(), "a", "1")).ok());
    w.fake.revoke_tokens();
    auto r = w.run(send_text(w.api.get(), "a", "2"));
    REQUIRE(r.ok());
    CHECK(w.fake.calls("gettoken") == 2);
    CHECK(w.fake.calls("message/send") == 3); // 1, then 2 rejected with 40014, then 2 again
    CHECK(w.api->stats().token_refreshes_on_error == 1);
}

TEST_CASE("access_token is renewed before it expires (injectable clock)", "[wecom][api]")
{
    World w({}, true);
    w.fake.set_token_lifetime(7200);
    REQUIRE(w.run(send_text(w.api.get(), "a", "1")).ok());
    // 7200 s life, 300 s margin: at +6899 s the old token is still used, at +6901 s it is not.
    w.clock_ms += 6'899'000;
    REQUIRE(w.run(send_text(w.api.get(), "a", "2")).ok());
    CHECK(w.fake.calls("gettoken") == 1);
    w.clock_ms += 2'000;
    w.fake.set_token_lifetime(7200);
    w.fake.revoke_tokens(); // a stale token would now be refused
    REQUIRE(w.run(send_text(w.api.get(), "a", "3")).ok());
    CHECK(w.fake.calls("gettoken") == 2);
    CHECK(w.api->stats().token_refreshes_on_error == 0);
}

TEST_CASE("a wrong corp secret is a credentials error, fetched once for all waiters", "[wecom][api]")
{
    World w;
    wecom::ApiOptions ao = w.api->options();
    ao.corp_secret = core::Secret("wrong-secret-value");
    wecom::ApiClient bad(*w.http, ao);
    std::vector<std::future<std::optional<wecom::ApiResult<wecom::Json>>>> calls;
    for (int i = 0; i < 5; ++i) calls.push_back(net::co_spawn(w.strand, wrap(send_text(&bad, "a", "x")), net::use_future));
    for (auto& f : calls) {
        REQUIRE(f.wait_for(20s) == std::future_status::ready);
        auto r = *f.get();
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().kind == wecom::ApiErrorKind::credentials);
        CHECK(r.error().errcode == 40001);
        CHECK(r.error().describe().find("wrong-secret-value") == std::string::npos);
    }
    CHECK(w.fake.calls("gettoken") == 1);
}

TEST_CASE("errcode -1 is retried with back-off at most 3 times", "[wecom][api]")
{
    World w;
    w.fake.fail("message/send", fakes::Fault{.errcode = -1}, 3);
    CHECK(w.run(send_text(w.api.get(), "a", "x")).ok());
    CHECK(w.fake.calls("message/send") == 4);
    w.fake.fail("message/send", fakes::Fault{.errcode = -1}, 4);
    auto r = w.run(send_text(w.api.get(), "a", "y"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == wecom::ApiErrorKind::busy);
    CHECK(w.fake.calls("message/send") == 8);
}

TEST_CASE("45009 and 45033 come back at once as limits, and 5xx and lost connections are retried", "[wecom][api]")
{
    World w;
    w.fake.fail("message/send", fakes::Fault{.errcode = 45009});
    auto r = w.run(send_text(w.api.get(), "a", "x"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == wecom::ApiErrorKind::frequency_limited);
    CHECK(r.error().transient());
    w.fake.fail("message/send", fakes::Fault{.errcode = 45033});
    r = w.run(send_text(w.api.get(), "a", "x"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == wecom::ApiErrorKind::concurrency_limited);
    CHECK(w.fake.calls("message/send") == 2);

    w.fake.fail("message/send", fakes::Fault{.http_status = 502}, 2);
    CHECK(w.run(send_text(w.api.get(), "a", "after 5xx")).ok());
    CHECK(w.fake.calls("message/send") == 5);
}

TEST_CASE("other errcodes are not retried and say what they mean", "[wecom][api]")
{
    World w;
    w.fake.fail("message/send", fakes::Fault{.errcode = 60020});
    auto r = w.run(send_text(w.api.get(), "a", "x"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == wecom::ApiErrorKind::rejected);
    CHECK_FALSE(r.error().transient());
    CHECK(r.error().describe() == "message/send: 60020 (server IP not in the app's trusted IP list): scripted fault");
    CHECK(w.fake.calls("message/send") == 1);
}

TEST_CASE("a timeout after sending: resent only where repeating is harmless", "[wecom][api]")
{
    https::Options ho;
    ho.request_timeout = 300ms;
    World w(ho);
    w.fake.add_group({"wrGROUP1", "福利群", "owner1", {}, {}});
    // add_msg_template is not idempotent: the server acted, the answer is late, no resend.
    w.fake.fail("externalcontact/add_msg_template", fakes::Fault{.delay = 1500ms, .before_acting = false});
    auto r = w.run([](wecom::ApiClient* api) -> net::awaitable<wecom::ApiResult<wecom::Json>> {
        std::vector<std::string> groups{"wrGROUP1"};
        co_return co_await wecom::add_group_msg_template(*api, "owner1", std::move(groups), "hi");
    }(w.api.get()));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == wecom::ApiErrorKind::unknown_outcome);
    CHECK(wecom::outcome_of(r.error(), false).status == wecom::Outcome::Status::check);
    CHECK(w.fake.effects("externalcontact/add_msg_template").size() == 1);
    CHECK(w.fake.calls("externalcontact/add_msg_template") == 1);

    // message/send with duplicate check is resent, and the server drops the duplicate.
    w.fake.fail("message/send", fakes::Fault{.delay = 1500ms, .before_acting = false});
    CHECK(w.run(send_text(w.api.get(), "a", "once")).ok());
    CHECK(w.fake.calls("message/send") == 2);
    CHECK(w.fake.effects("message/send").size() == 1);
}

TEST_CASE("two calls creating the same missing tag at once both get its id", "[wecom][api]")
{
    World w;
    REQUIRE(w.run(w.api->token()).ok());
    w.fake.set_latency(300ms); // both lists are answered before either tag is created
    auto a = net::co_spawn(w.strand, wrap(wecom::resolve_tag(*w.api, "新客", true)), net::use_future);
    auto b = net::co_spawn(w.strand, wrap(wecom::resolve_tag(*w.api, "新客", true)), net::use_future);
    REQUIRE(a.wait_for(20s) == std::future_status::ready);
    REQUIRE(b.wait_for(20s) == std::future_status::ready);
    auto ra = *a.get();
    auto rb = *b.get();
    REQUIRE(ra.ok());
    REQUIRE(rb.ok());
    CHECK(*ra == *rb);
    CHECK(*ra == w.fake.tag_ids_by_name().at("新客"));
    CHECK(w.fake.effects("externalcontact/add_corp_tag").size() == 1); // created once
    CHECK(w.fake.calls("externalcontact/add_corp_tag") == 2);          // both tried: the race happened
}
