#include "bot/metrics.hpp"

#include <cmath>
#include <charconv>
#include <stdexcept>

namespace qunbot::bot {
namespace {

std::string escape(const std::string& v)
{
    std::string out;
    for (char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

std::string render_labels(const Labels& labels)
{
    if (labels.empty()) return {};
    std::string s = "{";
    for (std::size_t i = 0; i < labels.size(); ++i) {
        if (i) s += ',';
        s += labels[i].first + "=\"" + escape(labels[i].second) + "\"";
    }
    return s + "}";
}

std::string with_label(const std::string& rendered, const std::string& extra)
{
    if (rendered.empty()) return "{" + extra + "}";
    return rendered.substr(0, rendered.size() - 1) + "," + extra + "}";
}

std::string number(double v)
{
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v); // shortest form that reads back exactly
    return std::string(buf, r.ptr);
}

} // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<std::uint64_t>[bounds_.size()])
{
    for (std::size_t i = 0; i < bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::observe(double v) noexcept
{
    for (std::size_t i = 0; i < bounds_.size(); ++i) {
        if (v <= bounds_[i]) {
            buckets_[i].fetch_add(1, std::memory_order_relaxed);
            break;
        }
    }
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_micros_.fetch_add(static_cast<std::uint64_t>(std::llround(v * 1e6)), std::memory_order_relaxed);
}

std::uint64_t Histogram::cumulative(std::size_t i) const noexcept
{
    std::uint64_t total = 0;
    for (std::size_t k = 0; k <= i && k < bounds_.size(); ++k) total += buckets_[k].load(std::memory_order_relaxed);
    return total;
}

double Histogram::sum() const noexcept { return static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6; }

Registry::Family& Registry::family(const std::string& name, const std::string& help, Type type)
{
    auto [it, inserted] = families_.try_emplace(name, Family{type, help, {}, {}, {}});
    if (!inserted && it->second.type != type) throw std::logic_error("metric " + name + " registered with two types");
    return it->second;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels)
{
    std::lock_guard lock(mutex_);
    auto& slot = family(name, help, Type::counter).counters[render_labels(labels)];
    if (!slot) slot = std::make_unique<Counter>();
    return *slot;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels)
{
    std::lock_guard lock(mutex_);
    auto& slot = family(name, help, Type::gauge).gauges[render_labels(labels)];
    if (!slot) slot = std::make_unique<Gauge>();
    return *slot;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                               const Labels& labels)
{
    std::lock_guard lock(mutex_);
    auto& slot = family(name, help, Type::histogram).histograms[render_labels(labels)];
    if (!slot) slot = std::make_unique<Histogram>(bounds);
    return *slot;
}

std::string Registry::render() const
{
    std::lock_guard lock(mutex_);
    std::string out;
    for (const auto& [name, f] : families_) {
        const char* type = f.type == Type::counter ? "counter" : f.type == Type::gauge ? "gauge" : "histogram";
        out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + type + "\n";
        for (const auto& [labels, c] : f.counters) out += name + labels + " " + std::to_string(c->value()) + "\n";
        for (const auto& [labels, g] : f.gauges) out += name + labels + " " + std::to_string(g->value()) + "\n";
        for (const auto& [labels, h] : f.histograms) {
            for (std::size_t i = 0; i < h->bounds().size(); ++i) {
                out += name + "_bucket" + with_label(labels, "le=\"" + number(h->bounds()[i]) + "\"") + " " +
                       std::to_string(h->cumulative(i)) + "\n";
            }
            out += name + "_bucket" + with_label(labels, "le=\"+Inf\"") + " " + std::to_string(h->count()) + "\n";
            out += name + "_sum" + labels + " " + number(h->sum()) + "\n";
            out += name + "_count" + labels + " " + std::to_string(h->count()) + "\n";
        }
    }
    return out;
}

} // namespace qunbot::bot
