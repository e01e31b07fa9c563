#include "bot/core/rate_limiter.hpp"

#include <algorithm>

namespace qunbot::core {

RateLimiter::RateLimiter(std::vector<Window> windows) : windows_(std::move(windows))
{
    for (const auto& w : windows_) longest_ms_ = std::max(longest_ms_, w.length_ms);
}

void RateLimiter::trim(std::deque<std::int64_t>& d, std::int64_t now_ms) const
{
    while (!d.empty() && d.front() <= now_ms - longest_ms_) d.pop_front();
}

std::int64_t RateLimiter::wait_ms(const std::string& key, std::int64_t now_ms)
{
    auto it = stamps_.find(key);
    if (it == stamps_.end()) return 0;
    auto& d = it->second;
    trim(d, now_ms);
    if (d.empty()) {
        stamps_.erase(it);
        return 0;
    }
    std::int64_t wait = 0;
    for (const auto& w : windows_) {
        if (w.limit == 0) return w.length_ms; // a window that allows nothing
        // Events in (now - length, now]; the window has room when fewer than `limit`.
        const auto first = std::upper_bound(d.begin(), d.end(), now_ms - w.length_ms);
        const auto inside = static_cast<std::size_t>(d.end() - first);
        if (inside < w.limit) continue;
        // The oldest event that must leave the window before one more fits.
        const std::int64_t oldest = *(d.end() - static_cast<std::ptrdiff_t>(w.limit));
        wait = std::max(wait, oldest + w.length_ms - now_ms);
    }
    return wait;
}

void RateLimiter::record(const std::string& key, std::int64_t at_ms)
{
    auto& d = stamps_[key];
    d.insert(std::upper_bound(d.begin(), d.end(), at_ms), at_ms);
}

std::int64_t RateLimiter::acquire(const std::string& key, std::int64_t now_ms)
{
    const auto w = wait_ms(key, now_ms);
    if (w == 0) record(key, now_ms);
    return w;
}

std::size_t RateLimiter::used(const std::string& key, std::size_t i, std::int64_t now_ms)
{
    auto it = stamps_.find(key);
    if (it == stamps_.end() || i >= windows_.size()) return 0;
    const auto& d = it->second;
    const auto first = std::upper_bound(d.begin(), d.end(), now_ms - windows_[i].length_ms);
    return static_cast<std::size_t>(d.end() - first);
}

} // namespace qunbot::core
