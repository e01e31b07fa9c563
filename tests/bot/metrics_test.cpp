#include "bot/metrics.hpp"

#include <catch2/catch.hpp>

using qunbot::bot::Registry;

TEST_CASE("metrics render in the Prometheus text format", "[metrics]")
{
    Registry r;
    r.counter("q_requests_total", "Requests", {{"route", "a"}, {"outcome", "ok"}}).inc(3);
    r.counter("q_requests_total", "Requests", {{"route", "a"}, {"outcome", "ok"}}).inc(); // same series
    r.counter("q_requests_total", "Requests", {{"route", "b\"x"}, {"outcome", "bad"}});
    r.gauge("q_open", "Open").add(2);
    auto& h = r.histogram("q_latency_seconds", "Latency", {0.01, 0.1});
    h.observe(0.005);
    h.observe(0.05);
    h.observe(5);
    const auto text = r.render();
    CHECK_THAT(text, Catch::Contains("# TYPE q_requests_total counter\n"));
    CHECK_THAT(text, Catch::Contains("q_requests_total{route=\"a\",outcome=\"ok\"} 4\n"));
    CHECK_THAT(text, Catch::Contains("q_requests_total{route=\"b\\\"x\",outcome=\"bad\"} 0\n"));
    CHECK_THAT(text, Catch::Contains("q_open 2\n"));
    CHECK_THAT(text, Catch::Contains("q_latency_seconds_bucket{le=\"0.01\"} 1\n"));
    CHECK_THAT(text, Catch::Contains("q_latency_seconds_bucket{le=\"0.1\"} 2\n"));
    CHECK_THAT(text, Catch::Contains("q_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
    CHECK_THAT(text, Catch::Contains("q_latency_seconds_sum 5.055\n"));
    CHECK_THAT(text, Catch::Contains("q_latency_seconds_count 3\n"));
}

TEST_CASE("one name cannot be two metric types", "[metrics][negative]")
{
    Registry r;
    r.counter("q_x", "x");
    CHECK_THROWS_AS(r.gauge("q_x", "x"), std::logic_error);
}
