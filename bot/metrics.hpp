#pragma once
/// \file
/// A small Prometheus registry: counters, gauges and histograms with labels, rendered in the
/// text exposition format. Registration and rendering take a mutex; updates are lock-free
/// atomics, so call sites that are hot keep the returned reference.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace qunbot::bot {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
public:
    void inc(std::uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> v_{0};
};

class Gauge {
public:
    void add(std::int64_t n) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
    void set(std::int64_t n) noexcept { v_.store(n, std::memory_order_relaxed); }
    [[nodiscard]] std::int64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::int64_t> v_{0};
};

class Histogram {
public:
    explicit Histogram(std::vector<double> bounds);
    void observe(double v) noexcept;
    [[nodiscard]] std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }
    [[nodiscard]] const std::vector<double>& bounds() const noexcept { return bounds_; }
    /// Cumulative count of observations <= bounds()[i].
    [[nodiscard]] std::uint64_t cumulative(std::size_t i) const noexcept;
    [[nodiscard]] double sum() const noexcept;

private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
    std::atomic<std::uint64_t> count_{0};
    std::atomic<std::uint64_t> sum_micros_{0};
};

class Registry {
public:
    Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
    Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
    Histogram& histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                         const Labels& labels = {});
    /// Text exposition format 0.0.4.
    [[nodiscard]] std::string render() const;

private:
    enum class Type { counter, gauge, histogram };
    struct Family {
        Type type;
        std::string help;
        std::map<std::string, std::unique_ptr<Counter>> counters;
        std::map<std::string, std::unique_ptr<Gauge>> gauges;
        std::map<std::string, std::unique_ptr<Histogram>> histograms;
    };
    Family& family(const std::string& name, const std::string& help, Type type);

    mutable std::mutex mutex_;
    std::map<std::string, Family> families_;
};

} // namespace qunbot::bot
