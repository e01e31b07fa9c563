#include "bot/cli_util.hpp"

#include <chrono>
#include <ctime>
#include <iostream>

namespace qunbot::bot {

int fail(const std::string& message, int code)
{
    std::cerr << "qunbot: " << message << "\n";
    return code;
}

std::string local_time(std::int64_t ms)
{
    if (ms <= 0) return "-";
    const std::time_t when = ms / 1000;
    std::tm tm{};
    localtime_r(&when, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

std::int64_t wall_now_ms()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

} // namespace qunbot::bot
