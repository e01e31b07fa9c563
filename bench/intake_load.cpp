// Load generator for `qunbot serve`: distinct, correctly encrypted and signed callbacks over
// keep-alive connections, either as fast as the server answers (closed loop) or at a fixed
// rate (open loop; latency is measured from each request's scheduled send time, so a stalled
// server is not hidden by the generator waiting for it). `--healthz` sends GET /healthz instead:
// the same connections and server with no crypto and no journal, the ceiling to compare with.
#include "adapters/wecom/callback_crypto.hpp"
#include "adapters/wecom/test_event.hpp"
#include "bot/config.hpp"
#include "bot/http_client.hpp"

#include <CLI/CLI.hpp>
#include <SQLiteCpp/Database.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace qunbot;

namespace {

struct Shared {
    std::vector<std::string> requests; // raw HTTP requests, each a distinct event
    std::atomic<std::size_t> next{0};
    Clock::time_point start;
    Clock::time_point stop;
    double interval_ns = 0; // open loop: time between two sends of one connection
};

struct ThreadStats {
    std::vector<double> latencies_ms;
    std::vector<double> sent_s; ///< when each request was (to be) sent, seconds from the start, for --timeline
    std::uint64_t ok = 0, not_ok = 0, errors = 0;
};

net::awaitable<void> connection(Shared& shared, ThreadStats& stats, tcp::endpoint ep, int index)
{
    const auto use = net::as_tuple(net::use_awaitable);
    auto ex = co_await net::this_coro::executor;
    tcp::socket socket(ex);
    auto [cec] = co_await socket.async_connect(ep, use);
    if (cec) {
        ++stats.errors;
        co_return;
    }
    socket.set_option(tcp::no_delay(true));
    boost::beast::flat_buffer buffer;
    net::steady_timer timer(ex);
    // Stagger the connections evenly over one interval in open-loop mode.
    auto scheduled = shared.start + std::chrono::nanoseconds(static_cast<long long>(shared.interval_ns * index / 32.0));
    for (;;) {
        if (shared.interval_ns > 0) {
            if (scheduled >= shared.stop) co_return;
            timer.expires_at(scheduled);
            co_await timer.async_wait(use);
        } else if (Clock::now() >= shared.stop) {
            co_return;
        }
        const auto i = shared.next.fetch_add(1);
        if (i >= shared.requests.size()) co_return;
        const auto sent = shared.interval_ns > 0 ? scheduled : Clock::now();
        auto [wec, wn] = co_await net::async_write(socket, net::buffer(shared.requests[i]), use);
        http::response<http::string_body> res;
        boost::system::error_code rec;
        if (!wec) std::tie(rec, std::ignore) = co_await http::async_read(socket, buffer, res, use);
        if (wec || rec) {
            ++stats.errors;
            co_return;
        }
        stats.latencies_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
        stats.sent_s.push_back(std::chrono::duration<double>(sent - shared.start).count());
        (res.result_int() == 200 ? stats.ok : stats.not_ok)++;
        if (shared.interval_ns > 0) scheduled += std::chrono::nanoseconds(static_cast<long long>(shared.interval_ns));
    }
}

double percentile(std::vector<double>& v, double p)
{
    if (v.empty()) return 0;
    const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App cli{"qunbot intake load generator"};
    std::string url, app_name, config_path, db_path;
    int connections = 32, threads = 2;
    double seconds = 10, rate = 0;
    bool healthz = false;
    bool timeline = false;
    cli.add_option("--url", url, "Callback URL of the running server")->required();
    cli.add_option("--app", app_name, "App name (its secrets sign the callbacks)")->required();
    cli.add_option("--config", config_path, "Server configuration file");
    cli.add_option("--db", db_path, "Server database: count journal rows before and after");
    cli.add_option("--connections", connections, "Keep-alive connections");
    cli.add_option("--threads", threads, "Generator threads");
    cli.add_option("--seconds", seconds, "Duration");
    cli.add_option("--rate", rate, "Total requests per second (0: as fast as answered)");
    cli.add_flag("--healthz", healthz,
                 "Send GET /healthz instead of callbacks: the HTTP ceiling of this machine (no crypto, no journal)");
    cli.add_flag("--timeline", timeline, "Also print p50/p99/max latency for each second of the run (where a tail comes from)");
    CLI11_PARSE(cli, argc, argv);

    auto config = bot::load_config(config_path);
    if (!config) return std::cerr << config.error().message << "\n", 1;
    std::erase_if(config->apps, [&](const bot::AppConfig& a) { return a.name != app_name; });
    if (config->apps.empty()) return std::cerr << "no app " << app_name << "\n", 1;
    config->apps[0].generate_secrets = false;
    if (auto st = bot::resolve_secrets(*config); !st) return std::cerr << st.error().message << "\n", 1;
    const auto& app = config->apps[0];
    auto target = bot::parse_http_url(url);
    if (!target) return std::cerr << target.error().message << "\n", 1;

    // Distinct events: enough for the whole run at up to 60,000/s (or at the fixed rate).
    const auto count = static_cast<std::size_t>((rate > 0 ? rate * 1.05 : 60000.0) * seconds) + 1000;
    Shared shared;
    shared.requests.resize(count);
    const auto run_id = wecom::random_alnum(8);
    {
        std::vector<std::thread> makers;
        const unsigned n = std::max(1u, std::thread::hardware_concurrency());
        for (unsigned t = 0; t < n; ++t) {
            makers.emplace_back([&, t] {
                auto crypto = wecom::CallbackCrypto::create(app.token, app.encoding_aes_key, app.corp_id);
                for (std::size_t i = t; i < count; i += n) {
                    if (healthz) {
                        shared.requests[i] = "GET /healthz HTTP/1.1\r\nHost: " + target->host + "\r\n\r\n";
                        continue;
                    }
                    wecom::TestEventSpec spec;
                    spec.kind = (i % 4 == 0) ? "member_left" : "member_joined";
                    spec.corp_id = app.corp_id;
                    spec.chat_id = "wrBench" + std::to_string(i % 2000);
                    spec.members = {"wmBench" + run_id + std::to_string(i)};
                    const auto payload = wecom::make_test_payload(spec);
                    const auto sealed = wecom::seal_callback(*crypto, *payload, "1700000000", std::to_string(i));
                    shared.requests[i] = "POST " + target->target + "?" + sealed.query + " HTTP/1.1\r\nHost: " + target->host +
                                         "\r\nContent-Type: text/xml\r\nContent-Length: " + std::to_string(sealed.body.size()) +
                                         "\r\n\r\n" + sealed.body;
                }
            });
        }
        for (auto& m : makers) m.join();
    }
    auto journal_rows = [&]() -> long long {
        if (db_path.empty() || healthz) return -1;
        SQLite::Database db(db_path, SQLite::OPEN_READONLY);
        return db.execAndGet("SELECT count(*) FROM inbox").getInt64();
    };
    const long long rows_before = journal_rows();

    const tcp::endpoint ep(net::ip::make_address(target->host), target->port);
    shared.interval_ns = rate > 0 ? 1e9 * connections / rate : 0;
    shared.start = Clock::now() + std::chrono::milliseconds(50);
    shared.stop = shared.start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    std::vector<ThreadStats> stats(static_cast<std::size_t>(threads));
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            net::io_context ioc(1);
            for (int c = t; c < connections; c += threads)
                net::co_spawn(ioc, connection(shared, stats[static_cast<std::size_t>(t)], ep, c), net::detached);
            ioc.run();
        });
    }
    for (auto& w : workers) w.join();
    const double elapsed = std::chrono::duration<double>(std::min(Clock::now(), shared.stop) - shared.start).count();

    ThreadStats all;
    for (auto& s : stats) {
        all.ok += s.ok;
        all.not_ok += s.not_ok;
        all.errors += s.errors;
        all.latencies_ms.insert(all.latencies_ms.end(), s.latencies_ms.begin(), s.latencies_ms.end());
        all.sent_s.insert(all.sent_s.end(), s.sent_s.begin(), s.sent_s.end());
    }
    if (timeline) {
        std::vector<std::vector<double>> by_second(static_cast<std::size_t>(elapsed) + 1);
        for (std::size_t i = 0; i < all.sent_s.size(); ++i) {
            const auto k = std::min(by_second.size() - 1, static_cast<std::size_t>(std::max(0.0, all.sent_s[i])));
            by_second[k].push_back(all.latencies_ms[i]);
        }
        for (std::size_t k = 0; k < by_second.size(); ++k) {
            auto& v = by_second[k];
            std::printf("second %-4zu  %6zu sent   p50 %7.3f   p99 %7.3f   max %7.3f ms\n", k, v.size(), percentile(v, 0.50),
                        percentile(v, 0.99), percentile(v, 1.0));
        }
    }
    const long long rows_after = journal_rows();
    std::printf("mode          %s, %d connections, %d threads, %.1f s\n",
                rate > 0 ? ("open loop at " + std::to_string(static_cast<int>(rate)) + "/s").c_str() : "closed loop (max)",
                connections, threads, elapsed);
    std::printf("answered 200  %llu   other status %llu   connection errors %llu\n", static_cast<unsigned long long>(all.ok),
                static_cast<unsigned long long>(all.not_ok), static_cast<unsigned long long>(all.errors));
    std::printf("throughput    %.0f %s/s\n", static_cast<double>(all.ok) / elapsed, healthz ? "requests" : "callbacks");
    std::printf("latency ms    p50 %.3f   p90 %.3f   p99 %.3f   max %.3f\n", percentile(all.latencies_ms, 0.50),
                percentile(all.latencies_ms, 0.90), percentile(all.latencies_ms, 0.99), percentile(all.latencies_ms, 1.0));
    if (rows_before >= 0) {
        std::printf("journal       %lld new rows for %llu acknowledged callbacks%s\n", rows_after - rows_before,
                    static_cast<unsigned long long>(all.ok),
                    rows_after - rows_before == static_cast<long long>(all.ok) ? " (all durable)" : "  <-- MISMATCH");
    }
    const bool lost = rows_before >= 0 && rows_after - rows_before != static_cast<long long>(all.ok);
    return (all.not_ok || lost) ? 1 : 0;
}
