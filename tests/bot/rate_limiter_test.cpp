#include "bot/core/rate_limiter.hpp"

#include <catch2/catch.hpp>

#include <random>

using qunbot::core::RateLimiter;

TEST_CASE("rate limiter: hand-computed waits for 30/min and 1000/h", "[rate]")
{
    RateLimiter l({{60'000, 30}, {3'600'000, 1000}});
    for (int i = 0; i < 30; ++i) REQUIRE(l.acquire("m", i * 1000) == 0);
    // 31st at t=30 s: the event of t=0 must leave the minute window first, at t=60 s.
    CHECK(l.acquire("m", 30'000) == 30'000);
    CHECK(l.used("m", 0, 30'000) == 30);
    // At exactly t=60 s the event of t=0 is outside (now-60 s, now].
    CHECK(l.acquire("m", 60'000) == 0);
    CHECK(l.acquire("m", 60'000) == 1'000); // next to leave: t=1 s
    // Another key is independent.
    CHECK(l.acquire("other", 30'000) == 0);
}

TEST_CASE("rate limiter: the hourly window binds when the minute one does not", "[rate]")
{
    RateLimiter l({{60'000, 30}, {3'600'000, 1000}});
    std::int64_t t = 0;
    int sent = 0;
    while (sent < 1000) {
        const auto w = l.acquire("m", t);
        if (w == 0) ++sent;
        else t += w;
    }
    // 30 per minute: the 1000th went out in minute 33 (t = 33 min); the next must wait for
    // the first event (t = 0) to leave the hour.
    CHECK(t == 33 * 60'000);
    CHECK(l.wait_ms("m", t) == 3'600'000 - t);
}

TEST_CASE("rate limiter never lets a window exceed its limit (random arrivals)", "[rate]")
{
    const std::vector<RateLimiter::Window> windows{{60'000, 30}, {3'600'000, 1000}, {1'000, 3}};
    RateLimiter l(windows);
    std::mt19937_64 rng(20261124);
    std::uniform_int_distribution<int> gap(0, 400);
    std::vector<std::int64_t> accepted;
    std::int64_t t = 0;
    int refused = 0;
    for (int i = 0; i < 50'000; ++i) {
        t += gap(rng);
        const auto w = l.acquire("k", t);
        if (w == 0) accepted.push_back(t);
        else ++refused;
        REQUIRE(w >= 0);
    }
    REQUIRE(refused > 0);
    REQUIRE(accepted.size() > 1000);
    // Every window of each length, anchored at each accepted event, holds at most the limit.
    for (const auto& win : windows) {
        std::size_t lo = 0;
        for (std::size_t hi = 0; hi < accepted.size(); ++hi) {
            while (accepted[lo] <= accepted[hi] - win.length_ms) ++lo;
            REQUIRE(hi - lo + 1 <= win.limit);
        }
    }
    // And a refused event would have fitted after the wait it was told.
    RateLimiter probe(windows);
    for (auto a : accepted) probe.record("k", a);
    const auto w = probe.wait_ms("k", t);
    if (w > 0) CHECK(probe.wait_ms("k", t + w) == 0);
}
