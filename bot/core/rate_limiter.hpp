#pragma once
/// \file
/// Sliding-window rate limits per key ("at most 30 in any 60 s and 1000 in any hour"). Exact,
/// not approximate: the timestamps of the last window are kept, so no window of the configured
/// length ever holds more than its limit. Pure: the caller passes the time (injectable clock).
/// Not thread-safe.

#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

namespace qunbot::core {

class RateLimiter {
public:
    struct Window {
        std::int64_t length_ms = 60'000;
        std::size_t limit = 30;
    };
    explicit RateLimiter(std::vector<Window> windows);

    /// How long until an event for `key` at `now_ms` fits every window (0 = now).
    [[nodiscard]] std::int64_t wait_ms(const std::string& key, std::int64_t now_ms);
    /// Records an event for `key` at `at_ms` (call after `wait_ms` returned 0, or to replay
    /// history at start-up). Times must not go backwards per key by more than a window.
    void record(const std::string& key, std::int64_t at_ms);
    /// `wait_ms` then `record` when it is 0; returns the wait.
    std::int64_t acquire(const std::string& key, std::int64_t now_ms);
    /// Events of `key` inside window `i` ending at `now_ms`.
    [[nodiscard]] std::size_t used(const std::string& key, std::size_t i, std::int64_t now_ms);
    [[nodiscard]] const std::vector<Window>& windows() const noexcept { return windows_; }
    /// Keys currently tracked (for metrics).
    [[nodiscard]] std::size_t keys() const noexcept { return stamps_.size(); }

private:
    void trim(std::deque<std::int64_t>& d, std::int64_t now_ms) const;
    std::vector<Window> windows_;
    std::int64_t longest_ms_ = 0;
    std::unordered_map<std::string, std::deque<std::int64_t>> stamps_;
};

} // namespace qunbot::core
