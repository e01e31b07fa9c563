#include "bot/core/thread_name.hpp"

#include <algorithm>
#include <cstring>

#include <pthread.h>

namespace qunbot::core {

void name_this_thread(std::string_view name) noexcept
{
    char buf[16] = {};
    std::memcpy(buf, name.data(), std::min(name.size(), sizeof buf - 1));
    pthread_setname_np(pthread_self(), buf);
}

} // namespace qunbot::core
