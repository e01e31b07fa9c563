#pragma once

#include <string_view>

namespace qunbot::core {

/// Names the calling thread (as `top -H`, `perf` and /proc/<pid>/task/*/comm show it).
/// Linux keeps 15 characters; longer names are cut. Best effort: a failure is ignored.
void name_this_thread(std::string_view name) noexcept;

} // namespace qunbot::core
