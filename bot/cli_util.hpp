#pragma once
/// \file
/// Small helpers shared by the command-line tools (`qunbot outbox`, `lottery`, ...).

#include <cstdint>
#include <string>

namespace qunbot::bot {

/// Prints "qunbot: <message>" to stderr and returns `code` (the tool's exit status).
int fail(const std::string& message, int code = 1);
/// `ms` since the epoch as local "YYYY-MM-DD HH:MM:SS" ("-" for 0).
[[nodiscard]] std::string local_time(std::int64_t ms);
/// Milliseconds since the epoch, now.
[[nodiscard]] std::int64_t wall_now_ms();

} // namespace qunbot::bot
