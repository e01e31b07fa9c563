// Delivery throughput: an in-process bot drains N outbox actions (message/send to staff, the
// retry-safe path with duplicate check) into the fake WeCom server over TLS on loopback, with
// durable outcome writes. Prints actions/s for a fast and a 20 ms server.
//   build/bench/qunbot_delivery_drain [N]
#include "bot/config.hpp"
#include "bot/service.hpp"
#include "fakes/fake_wecom.hpp"
#include "storage/database.hpp"
#include "storage/outbox.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Transaction.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

using namespace qunbot;
namespace fs = std::filesystem;

namespace {

std::int64_t now_ms()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double run(int n, std::chrono::milliseconds latency, unsigned concurrency)
{
    const auto dir = fs::temp_directory_path() / ("qunbot-bench-" + std::to_string(::getpid()) + "-" + std::to_string(now_ms()));
    fs::create_directories(dir / "rules");
    const auto pki = fakes::make_test_pki({"127.0.0.1"});
    fakes::FakeWeCom fake("wwbenchcorp00001", "bench-secret", pki);
    fake.set_latency(latency);
    fakes::write_pem((dir / "ca.pem").string(), pki.ca_pem);
    {
        std::ofstream s(dir / "s.json");
        s << R"({"token":"QDG6eK","encoding_aes_key":"jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C","corp_secret":"bench-secret"})";
    }
    const std::string config_text = "{\"listen\":{\"address\":\"127.0.0.1\",\"port\":0},\"threads\":2,\"database\":\"" +
                                    (dir / "q.db").string() + "\",\"log_level\":\"warn\",\"rules\":{\"dir\":\"" + (dir / "rules").string() +
                                    "\",\"watch\":false},\"delivery\":{\"concurrency\":" + std::to_string(concurrency) +
                                    ",\"directory_sync\":false},\"apps\":[{\"name\":\"b\",\"path\":\"/cb\",\"corp_id\":\"wwbenchcorp00001\","
                                    "\"secrets_file\":\"" + (dir / "s.json").string() + "\",\"api_base_url\":\"" + fake.base_url() +
                                    "\",\"api_ca_file\":\"" + (dir / "ca.pem").string() + "\",\"agent_id\":1}]}";
    {
        auto db = storage::open_for_writing((dir / "q.db").string(), storage::Durability::full);
        SQLite::Transaction tx(*db);
        for (int i = 0; i < n; ++i) {
            core::Action a;
            a.kind = core::ActionKind::reply;
            a.idempotency_key = "bench/" + std::to_string(i);
            a.rule_id = "bench";
            a.tenant = "wwbenchcorp00001";
            a.platform = "wecom";
            a.app = "b";
            a.target = "staff" + std::to_string(i % 2000); // within 30/min per member
            a.text = "message " + std::to_string(i);
            storage::enqueue_action(*db, a, now_ms());
        }
        tx.commit();
    }
    auto config = bot::parse_config(config_text, "bench");
    if (!config || !bot::resolve_secrets(*config)) throw std::runtime_error("bench config");
    auto service = bot::Service::create(*config);
    if (!service) throw std::runtime_error(service.error().message);
    const auto start = std::chrono::steady_clock::now();
    (*service)->start(false);
    auto reader = storage::open_for_reading((dir / "q.db").string());
    for (;;) {
        auto done = reader->execAndGet("SELECT count(*) FROM outbox WHERE status = 'done'").getInt64();
        if (done >= n) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    (*service)->request_shutdown();
    (*service)->wait();
    if (static_cast<int>(fake.effects("message/send").size()) != n) throw std::runtime_error("not every action arrived exactly once");
    fs::remove_all(dir);
    return n / seconds;
}

} // namespace

int main(int argc, char** argv)
{
    spdlog::set_level(spdlog::level::warn);
    const int n = argc > 1 ? std::atoi(argv[1]) : 5000;
    std::printf("delivery drain, %d message/send actions, fake WeCom over TLS on loopback, outcomes fsynced\n", n);
    for (const auto& [latency, conc] : {std::pair{0, 8u}, std::pair{20, 8u}, std::pair{20, 32u}}) {
        const double rate = run(n, std::chrono::milliseconds(latency), conc);
        std::printf("  server latency %3d ms, concurrency %2u: %8.0f actions/s\n", latency, conc, rate);
    }
    return 0;
}
