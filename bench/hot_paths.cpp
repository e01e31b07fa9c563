// In-process micro-benchmarks of the intake hot path, step by step: signature, decryption,
// body and payload parsing, and the journal's group commit without HTTP.
#include "adapters/wecom/callback_crypto.hpp"
#include "adapters/wecom/envelope.hpp"
#include "adapters/wecom/event_parser.hpp"
#include "adapters/wecom/test_event.hpp"
#include "storage/journal.hpp"

#include <benchmark/benchmark.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>

using namespace qunbot;

namespace {

const wecom::CallbackCrypto& crypto()
{
    static const auto c = *wecom::CallbackCrypto::create(core::Secret("QDG6eK"),
                                                          core::Secret("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"),
                                                          "wx5823bf96d3bd56c7");
    return c;
}

std::string join_payload(int i)
{
    wecom::TestEventSpec spec;
    spec.corp_id = "wx5823bf96d3bd56c7";
    spec.members = {"wmMember" + std::to_string(i), "wmOther" + std::to_string(i)};
    spec.create_time = 1'700'000'000;
    return *wecom::make_test_payload(spec);
}

void signature_verify(benchmark::State& state)
{
    const auto sealed = wecom::seal_callback(crypto(), join_payload(1), "1700000000", "nonce");
    const auto env = *wecom::parse_envelope(sealed.body);
    const auto sig = crypto().signature("1700000000", "nonce", env.encrypt);
    for (auto _ : state) benchmark::DoNotOptimize(crypto().verify(sig, "1700000000", "nonce", env.encrypt));
}
BENCHMARK(signature_verify);

void decrypt(benchmark::State& state)
{
    const auto sealed = wecom::seal_callback(crypto(), join_payload(1), "1700000000", "nonce");
    const auto env = *wecom::parse_envelope(sealed.body);
    for (auto _ : state) benchmark::DoNotOptimize(crypto().decrypt(env.encrypt));
}
BENCHMARK(decrypt);

void parse_envelope_and_event(benchmark::State& state)
{
    const auto sealed = wecom::seal_callback(crypto(), join_payload(1), "1700000000", "nonce");
    const auto payload = join_payload(1);
    const wecom::ParseContext ctx{"bench", "wx5823bf96d3bd56c7"};
    for (auto _ : state) {
        benchmark::DoNotOptimize(wecom::parse_envelope(sealed.body));
        benchmark::DoNotOptimize(wecom::parse_event(payload, ctx));
    }
}
BENCHMARK(parse_envelope_and_event);

void whole_callback_without_io(benchmark::State& state)
{
    const auto sealed = wecom::seal_callback(crypto(), join_payload(1), "1700000000", "nonce");
    const auto sig = sealed.query.substr(14, 40);
    const wecom::ParseContext ctx{"bench", "wx5823bf96d3bd56c7"};
    for (auto _ : state) {
        auto env = wecom::parse_envelope(sealed.body);
        auto payload = crypto().open(sig, "1700000000", "nonce", env->encrypt);
        benchmark::DoNotOptimize(wecom::parse_event(*payload, ctx));
    }
}
BENCHMARK(whole_callback_without_io);

// The journal alone: `inflight` appenders keep that many events outstanding (as that many HTTP
// connections would), durability as given. Reports durable events per second.
void journal_group_commit(benchmark::State& state)
{
    const auto durability = state.range(1) ? storage::Durability::full : storage::Durability::normal;
    const auto inflight = static_cast<int>(state.range(0));
    const auto dir = std::filesystem::temp_directory_path() / ("qunbot-bench-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::vector<core::Event> events;
    const wecom::ParseContext ctx{"bench", "wx5823bf96d3bd56c7"};
    for (int i = 0; i < 4096; ++i) events.push_back(*wecom::parse_event(join_payload(i), ctx));
    std::int64_t done_total = 0;
    for (auto _ : state) {
        state.PauseTiming();
        std::filesystem::remove_all(dir / "j.db");
        std::filesystem::remove(dir / "j.db-wal");
        std::filesystem::remove(dir / "j.db-shm");
        storage::Journal::Options o;
        o.path = (dir / "j.db").string();
        o.durability = durability;
        storage::Journal journal(o);
        std::mutex m;
        std::condition_variable cv;
        int outstanding = 0;
        std::size_t next = 0;
        state.ResumeTiming();
        std::unique_lock lock(m);
        while (next < events.size() || outstanding > 0) {
            while (outstanding < inflight && next < events.size()) {
                ++outstanding;
                journal.append(events[next++], [&](storage::AppendOutcome) {
                    std::lock_guard l(m);
                    --outstanding;
                    cv.notify_one();
                });
            }
            cv.wait(lock);
        }
        lock.unlock();
        done_total += static_cast<std::int64_t>(events.size());
        state.PauseTiming();
        journal.close();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(done_total);
    std::filesystem::remove_all(dir);
}
BENCHMARK(journal_group_commit)->Args({32, 1})->Args({32, 0})->Args({256, 1})->Unit(benchmark::kMillisecond)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
