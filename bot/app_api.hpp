#pragma once
/// \file
/// Builds the HTTPS and WeCom API clients of one configured app (for the delivery worker and
/// the command-line tools).

#include "adapters/https/client.hpp"
#include "adapters/wecom/api_client.hpp"
#include "bot/config.hpp"

#include <functional>
#include <memory>

namespace qunbot::bot {

struct AppApi {
    std::unique_ptr<https::Client> http;
    std::unique_ptr<wecom::ApiClient> api; ///< null when the app has no corp secret
};

/// Throws std::runtime_error on a bad base URL or an unreadable CA file (start-up errors).
[[nodiscard]] AppApi make_app_api(boost::asio::any_io_executor executor, const AppConfig& app, const DeliveryConfig& delivery,
                                  std::function<std::int64_t()> now_ms);

} // namespace qunbot::bot
